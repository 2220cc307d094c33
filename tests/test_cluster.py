"""The pipeline submitted to a real standalone cluster (a master and two worker JVMs) equals a local run.

The cluster comes from ``scripts/cluster.py``; jobs go through ``deploy/spark-submit/submit.sh`` exactly
as in production, with the spotrec package shipped as a zip (``--py-files``) and Delta as ``--jars``. The
driver gets no ``PYTHONPATH`` to this checkout, so it and the executors import spotrec from the zip.

The helpers here (the shared tiny world and its local-mode reference run, ``submit``, ``snapshot``)
are also used by ``tests/test_faults.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import cli
from spotrec import columns as C
from spotrec.tables import (
    BRONZE_EVENTS,
    DISCOVER_WEEKLY,
    INTERACTIONS,
    PLAYLISTS,
    QUARANTINE,
    SILVER_EVENTS,
    TRACK_FACTORS,
    TRACK_INDEX,
    TRACKS,
    USER_FACTORS,
    USER_INDEX,
    TableSpec,
)

REPO = Path(__file__).resolve().parents[1]
SUBMIT_SH = REPO / "deploy" / "spark-submit" / "submit.sh"
sys.path.insert(0, str(REPO / "scripts"))
import cluster as standalone  # noqa: E402  (scripts/cluster.py)

WORLD = ["generate.users=100", "generate.weeks=1", "generate.artists=40", "generate.partitions=4", "generate.seed=11"]
"""A tiny world: ~2,000 events, ~1,000 tracks; enough for several files and partitions."""
STEPS_RUN = ("ingest", "matrix")
"""Steps compared between cluster and local runs (the world is generated once, locally)."""
VOLATILE = frozenset({C.INGEST_RUN_ID, C.INGEST_TIME, C.RUN_ID})
"""Columns that differ between two runs of the same input by design (run ids, wall-clock times)."""
COMPARED: tuple[TableSpec, ...] = (
    BRONZE_EVENTS,
    SILVER_EVENTS,
    QUARANTINE,
    TRACKS,
    PLAYLISTS,
    USER_INDEX,
    TRACK_INDEX,
    INTERACTIONS,
)
SUBMIT_TIMEOUT_S = 420


# -- the cluster ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[standalone.LocalCluster]:
    """One master + two 1-core workers for the session (shared with test_faults), always stopped."""
    yield from standalone.cluster_fixture(tmp_path_factory)


@pytest.fixture
def healthy_cluster(cluster: standalone.LocalCluster) -> standalone.LocalCluster:
    """The cluster with both workers registered (restarting one an earlier test killed)."""
    cluster.ensure_workers(2)
    return cluster


# -- the tiny world and its local-mode reference run ----------------------------------------------
def sets(settings: Sequence[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]``."""
    return [arg for s in settings for arg in ("--set", s)]


def pipeline_skips() -> list[str]:
    """``--skip`` for every pipeline step but ingest and matrix (the world is already generated)."""
    return [arg for step in cli.PIPELINE if step not in STEPS_RUN for arg in ("--skip", step)]


@dataclass(frozen=True)
class World:
    """The generated raw files, a local-mode run of the pipeline over them, and the zipped package."""

    raw_dir: Path
    reference_root: Path
    pyfiles: Path

    def settings(self, root: Path) -> list[str]:
        """Storage overrides for a run writing its tables under ``root`` from this world's raw files."""
        return [
            *WORLD,
            f"storage.root={root}",
            f"storage.raw_dir={self.raw_dir}",
            f"storage.checkpoint_dir={root}/_checkpoints",
            f"storage.artifacts_dir={root}/_artifacts",
        ]


_world: World | None = None


def run_local(argv: list[str]) -> None:
    """``spotrec <argv>`` in this process, on the test session (local mode)."""
    assert cli.main(argv) == 0, f"spotrec {' '.join(argv)} failed"


def reference_world(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Generate the world and run ingest + matrix locally, once per test session."""
    global _world
    if _world is None:
        base = tmp_path_factory.mktemp("cluster-world")
        world = World(raw_dir=base / "raw", reference_root=base / "reference", pyfiles=build_pyfiles(base))
        run_local(["generate", *sets(world.settings(base / "generated"))])
        run_local(["pipeline", *pipeline_skips(), *sets(world.settings(world.reference_root))])
        _world = world
    return _world


def build_pyfiles(dest: Path) -> Path:
    """Zip the spotrec package (sources and package data) for ``--py-files``."""
    out = dest / "spotrec.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((REPO / "spotrec").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                zf.write(path, path.relative_to(REPO).as_posix())
    return out


# -- submitting -----------------------------------------------------------------------------------
def submit(
    cluster: standalone.LocalCluster,
    world: World,
    step: str,
    argv: list[str],
    *,
    log: Path,
    job_file: Path | None = None,
    total_cores: int | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``deploy/spark-submit/submit.sh step argv...`` against ``cluster`` in its own process group."""
    run_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run_env.update(
        {
            "SPARK_MASTER": cluster.master_url,
            "SPARK_SUBMIT": standalone.spark_bin("spark-submit"),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPOTREC_PY_FILES": str(world.pyfiles),
            "SPOTREC_PYTHON": sys.executable,
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPOTREC_DRIVER_MEMORY": "1g",
            "SPOTREC_EXECUTOR_MEMORY": "512m",
            "SPOTREC_EXECUTOR_CORES": "1",
        }
    )
    if job_file is not None:
        run_env["SPOTREC_JOB_FILE"] = str(job_file)
    if total_cores is not None:
        run_env["SPOTREC_TOTAL_CORES"] = str(total_cores)
    run_env.update(env or {})
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["bash", str(SUBMIT_SH), step, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=log.parent,
            env=run_env,
            start_new_session=True,
        )


def finish(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = SUBMIT_TIMEOUT_S) -> None:
    """Wait for a submitted job; fail with its log's tail unless it exits 0 (kill it on timeout)."""
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        standalone.kill_group(proc.pid, 9)
        proc.wait()
        pytest.fail(f"spark-submit still running after {timeout_s}s:\n{standalone.tail(str(log), 60)}")
    assert rc == 0, f"spark-submit exited {rc}:\n{standalone.tail(str(log), 60)}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a submitted job's process group if it still runs (test cleanup)."""
    if proc.poll() is None:
        standalone.kill_group(proc.pid, 9)
        proc.wait()


def app_ids(cluster: standalone.LocalCluster) -> set[str]:
    status = cluster.status()
    return {a["id"] for a in [*status.get("activeapps", []), *status.get("completedapps", [])]}


def workers_with_executors(cluster: standalone.LocalCluster, app_id: str) -> list[int]:
    """Indexes of the workers that launched an executor for ``app_id`` (their work dir has one)."""
    return [
        i
        for i in range(len(cluster.workers))
        if (Path(cluster.workdir) / f"worker-{i}" / app_id).is_dir()
        and any((Path(cluster.workdir) / f"worker-{i}" / app_id).iterdir())
    ]


# -- comparing tables -----------------------------------------------------------------------------
def table_dir(root: Path, spec: TableSpec) -> Path:
    return root / spec.layer / spec.name


def snapshot(spark: SparkSession, root: Path, spec: TableSpec, drop: Sequence[str] = ()) -> list[tuple]:
    """The table's rows without run-specific columns, doubles rounded to 9 places, in a fixed order."""
    df = spark.read.format("delta").load(str(table_dir(root, spec)))
    cols = [
        F.round(f.name, 9).alias(f.name) if isinstance(f.dataType, T.DoubleType) else F.col(f.name)
        for f in df.schema.fields
        if f.name not in VOLATILE and f.name not in drop
    ]
    return sorted((tuple(r) for r in df.select(cols).collect()), key=repr)


def assert_same_rows(got: list[tuple], want: list[tuple], what: str) -> None:
    """Equal row lists, with a short message (not a 2,000-row diff) when they differ."""
    if got != want:
        extra = [r for r in got if r not in set(want)][:3]
        missing = [r for r in want if r not in set(got)][:3]
        pytest.fail(f"{what}: {len(got)} rows vs {len(want)} expected; unexpected {extra}; missing {missing}")


def assert_tables_equal(spark: SparkSession, root: Path, reference: Path, specs: Sequence[TableSpec]) -> None:
    for spec in specs:
        want = snapshot(spark, reference, spec)
        assert want, f"reference {spec.full_name} is empty: the comparison would prove nothing"
        assert_same_rows(snapshot(spark, root, spec), want, spec.full_name)


# -- the test -------------------------------------------------------------------------------------
@pytest.mark.cluster
def test_pipeline_on_standalone_cluster_equals_local_run(
    spark: SparkSession,
    healthy_cluster: standalone.LocalCluster,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    world = reference_world(spark, tmp_path_factory)
    before = app_ids(healthy_cluster)
    root = tmp_path / "warehouse"
    log = tmp_path / "submit.log"
    started = time.monotonic()
    finish(submit(healthy_cluster, world, "pipeline", [*pipeline_skips(), *sets(world.settings(root))], log=log), log)
    print(f"cluster pipeline run: {time.monotonic() - started:.0f}s")

    new_apps = app_ids(healthy_cluster) - before
    assert len(new_apps) == 1, f"expected one application on the standalone master, got {new_apps}"
    assert workers_with_executors(healthy_cluster, new_apps.pop()) == [0, 1], "both workers must run executors"
    assert_tables_equal(spark, root, world.reference_root, COMPARED)
    shutil.rmtree(root)


@pytest.mark.cluster
def test_weekly_step_on_standalone_cluster_equals_local_run(
    spark: SparkSession,
    healthy_cluster: standalone.LocalCluster,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    """``spotrec weekly`` with our CG solver: the same playlists and (to float rounding) the same factors.

    Only the default solver runs here (about 4 min on the 2-core CI machine). ``weekly.solver: mllib`` differs
    only in the factorisation, which is Spark's own distributed ALS; everything after the factors (top-N,
    similar tracks, clusters, the writes) is the same code.
    """
    solver = "cg"
    world = reference_world(spark, tmp_path_factory)
    als = [f"weekly.solver={solver}", "weekly.rank=4", "weekly.max_iter=3", "weekly.num_blocks=2"]
    local, remote = tmp_path / "local", tmp_path / "cluster"
    for root in (local, remote):
        shutil.copytree(world.reference_root, root)
    run_local(["weekly", *sets([*world.settings(local), *als])])
    log = tmp_path / "submit.log"
    finish(submit(healthy_cluster, world, "weekly", sets([*world.settings(remote), *als]), log=log), log)
    want = snapshot(spark, local, DISCOVER_WEEKLY, drop=[C.SCORE])
    assert want, "the local weekly run wrote no playlists: the comparison would prove nothing"
    assert_same_rows(snapshot(spark, remote, DISCOVER_WEEKLY, drop=[C.SCORE]), want, f"{solver}: discover_weekly")
    for spec, key in ((USER_FACTORS, C.USER_IDX), (TRACK_FACTORS, C.TRACK_IDX)):
        got, ref = (
            sorted(
                (r[key], list(r[C.FEATURES]), r[C.MODEL_VERSION])
                for r in spark.read.format("delta").load(str(table_dir(root, spec))).collect()
            )
            for root in (remote, local)
        )
        assert [(k, v) for k, _, v in got] == [(k, v) for k, _, v in ref], spec.full_name
        assert got
        for (_, a, _), (_, b, _) in zip(got, ref, strict=True):
            assert a == pytest.approx(b, rel=1e-4, abs=1e-5), spec.full_name
