"""The notebooks in notebooks/ run top to bottom on a world built by the real pipeline, and say true things.

A module fixture generates a small listening world and runs every pipeline step over it (in this test
session's Spark, with a reduced config: 60 users, a few epochs and episodes), into this test's temp folder.
Each notebook is then executed by nbclient in an IPython kernel, as a data engineer runs it, with its
``parameters`` cell overridden the way papermill does (an injected cell right after it) to point at that
world. Any cell error fails the test with the cell's traceback. The figures the notebooks print are then
checked against the tables, read independently here (Discover Weekly holds no track from the user's
history, the time-travel diff equals the difference of the two versions, lineage names the real run).

The three notebooks share one kernel (started once for the module: a kernel and its Spark JVM cost
~30 s each on a busy machine); every notebook starts with ``%reset -f``, so none can lean on variables
another one defined. The kernel builds its own local Spark (``local[1]``) and reads the same Delta
folders; the executed notebooks are kept beside the world for inspection when a test fails.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.util import run_sync
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spotrec import cli
from spotrec import columns as C
from spotrec.config import Config, load_config
from spotrec.logs import remove_handlers
from spotrec.storage import Storage
from spotrec.tables import DISCOVER_WEEKLY, MODEL_METRICS, RL_PLAYLISTS, RNN_RECOMMENDATIONS, RUNS, SILVER_EVENTS

pytestmark = pytest.mark.slow  # real Jupyter kernels over a pipeline-built world: the slowest module


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

WORLD_SETTINGS = [
    "generate.users=60",
    "generate.artists=30",
    "generate.albums_per_artist=2",
    "generate.tracks_per_album=5",
    "generate.weeks=3",
    "generate.partitions=2",
    "weekly.rank=8",
    "weekly.max_iter=4",
    "weekly.num_blocks=2",
    "weekly.user_block_size=64",
    "rnn.w2v_epochs=1",
    "rnn.rnn_epochs=2",
    "rnn.vector_size=16",
    "rnn.hidden_size=16",
    "rnn.n_trees=5",
    "rl.episodes=40",
    "rl.learning_starts=20",
    "rl.log_every=20",
    "rl.eval_sessions=10",
    "rl.training_users=20",
    "rl.user_model_max_epochs=2",
]
"""A world small enough for CI: every step runs, with few users, epochs and episodes."""

KERNEL_SETTINGS = [
    "spark.master=local[1]",
    "spark.driver_memory=1g",
    "spark.shuffle_partitions=1",
    'spark.conf={"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}',
]
"""The notebook kernels' own Spark: small, since it only reads."""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    remove_handlers()


@pytest.fixture(scope="module")
def world(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Config, Storage]]:
    """The pipeline's tables for a small generated world (every step but the report)."""
    root = tmp_path_factory.mktemp("notebook-world")
    settings = [
        *WORLD_SETTINGS,
        f"storage.root={root / 'warehouse'}",
        f"storage.raw_dir={root / 'raw'}",
        f"storage.checkpoint_dir={root / 'checkpoints'}",
        f"storage.artifacts_dir={root / 'artifacts'}",
    ]
    started = time.monotonic()
    code = cli.main(["pipeline", "--skip", "report", *(a for s in settings for a in ("--set", s))])
    remove_handlers()
    assert code == 0
    print(f"notebook world built in {time.monotonic() - started:.0f}s")
    cfg = load_config(None, settings)
    yield root, cfg, Storage(spark, cfg.storage)


@pytest.fixture(scope="module")
def kernel(world: tuple[Path, Config, Storage]) -> Iterator[AsyncKernelManager]:
    """One IPython kernel for all notebooks of the module, started in ``<world>/notebooks`` as Jupyter would
    start it in the repository's ``notebooks/``: the default ``storage_root = "warehouse"`` then has to
    find ``<world>/warehouse``."""
    cwd = world[0] / "notebooks"
    cwd.mkdir(exist_ok=True)
    km = AsyncKernelManager(kernel_name="python3")
    run_sync(km.start_kernel)(cwd=str(cwd))
    try:
        yield km
    finally:
        run_sync(km.shutdown_kernel)(now=True)


def test_notebooks_are_committed_valid_and_without_outputs() -> None:
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [p.name for p in paths] == ["01_listener.ipynb", "02_time_travel.ipynb", "03_model_metrics.ipynb"]
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name}: strip the outputs"
        tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and nb.cells[tagged[0]].cell_type == "code", f"{path.name}: one parameters cell"
        assert 'storage_root = "warehouse"' in nb.cells[tagged[0]].source  # the demo's tables by default


def execute(name: str, world: Path, kernel: AsyncKernelManager, **parameters: Any) -> str:
    """Run ``notebooks/<name>`` in ``kernel`` with ``parameters``; return everything its cells printed."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    (at,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    values = {"settings": KERNEL_SETTINGS, **parameters}  # storage_root keeps its default, "warehouse"
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    nb.cells.insert(0, nbformat.v4.new_code_cell('get_ipython().run_line_magic("reset", "-f")'))
    started = time.monotonic()
    client = NotebookClient(nb, km=kernel, timeout=600, resources={"metadata": {"path": str(world / "notebooks")}})
    try:
        client.execute()
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
        nbformat.write(nb, world / name)  # the executed copy, outputs and all, for a failing run
    print(f"{name} executed in {time.monotonic() - started:.0f}s")
    texts = [
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stdout"
    ]
    return "".join(texts)


def test_listener_notebook_discover_weekly_has_nothing_from_the_history(
    world: tuple[Path, Config, Storage], kernel: AsyncKernelManager
) -> None:
    root, cfg, storage = world
    out = execute("01_listener.ipynb", root, kernel)

    assert f"tables in {root / 'warehouse'}\n" in out  # the default, relative storage_root found the world

    m = re.search(
        r"Discover Weekly of (\S+) for (\S+): (\d+) tracks, (\d+) already in the history, at most (\d+) per artist", out
    )
    assert m, out
    user, week, tracks, heard, per_artist = m.group(1), m.group(2), int(m.group(3)), int(m.group(4)), int(m.group(5))
    assert heard == 0
    expected = storage.read(DISCOVER_WEEKLY).where((F.col(C.USER_ID) == user) & (F.col(C.WEEK) == week)).count()
    assert tracks == expected > 0
    assert 1 <= per_artist <= cfg.weekly.max_per_artist
    # the chosen listener is the most active of those all three recommenders covered
    covered = (
        storage.read(DISCOVER_WEEKLY)
        .where(F.col(C.WEEK) == week)
        .select(C.USER_ID)
        .intersect(storage.read(RNN_RECOMMENDATIONS).select(C.USER_ID))
        .intersect(storage.read(RL_PLAYLISTS).select(C.USER_ID))
    )
    plays = storage.read(SILVER_EVENTS).groupBy(C.USER_ID).count().join(covered, C.USER_ID)
    assert plays.where(F.col(C.USER_ID) == user).first()["count"] == plays.agg(F.max("count")).first()[0]
    assert re.search(rf"^{user} played \d+ distinct tracks$", out, re.M)
    for system in ("discover_weekly & rnn", "discover_weekly & rl_playlist", "rnn & rl_playlist"):
        assert re.search(rf"^{system}: \d+ tracks in common$", out, re.M), out


def test_time_travel_notebook_diff_equals_the_two_versions(
    world: tuple[Path, Config, Storage], kernel: AsyncKernelManager
) -> None:
    root, _, storage = world
    out = execute("02_time_travel.ipynb", root, kernel, table="ops.model_metrics")

    m = re.search(r"ops\.model_metrics version (\d+) -> (\d+): (\d+) -> (\d+) rows, (\d+) added, (\d+) removed", out)
    assert m, out
    old, new, n_old, n_new, added, removed = (int(g) for g in m.groups())
    assert new == storage.version(MODEL_METRICS) and old == new - 1
    assert n_old == storage.read(MODEL_METRICS, version=old).count()
    assert n_new == storage.read(MODEL_METRICS, version=new).count()
    assert (added, removed) == (n_new - n_old, 0)  # ops.model_metrics is append-only
    assert n_new > n_old
    assert re.search(r"^0 keys \(run_id, model, dataset, metric, k\) present in both versions", out, re.M), out
    writers = storage.read(RUNS).where(F.col("outputs")["ops.model_metrics"] == new).collect()
    if writers:
        assert f"version {new} was left by run {writers[0]['run_id']} (step {writers[0]['step']})" in out
    else:
        assert f"no ops.runs row ends at ops.model_metrics version {new}" in out


def test_model_metrics_notebook_traces_discover_weekly_to_its_run(
    world: tuple[Path, Config, Storage], kernel: AsyncKernelManager
) -> None:
    root, cfg, storage = world
    out = execute("03_model_metrics.ipynb", root, kernel)

    m = re.search(
        r"gold\.discover_weekly version (\d+) was written by run (\S+) \(step (\w+)\) with ALS rank (\d+)", out
    )
    assert m, out
    (als_run,) = storage.read(RUNS).where((F.col("step") == "weekly") & (F.col("status") == "succeeded")).collect()
    assert int(m.group(1)) == storage.version(DISCOVER_WEEKLY) == als_run["outputs"]["gold.discover_weekly"]
    assert (m.group(2), m.group(3), int(m.group(4))) == (als_run["run_id"], "weekly", cfg.weekly.rank)
    inputs = ", ".join(f"{t} v{v}" for t, v in sorted(als_run["inputs"].items()))
    assert f"from {inputs}" in out
    # Each dataset's best model by ndcg@10 among every model's newest run, computed here with DataFrames.
    best = {
        d: (float(v), m, r)
        for d, v, m, r in re.findall(r"^(\S+): best ndcg@10 = ([\d.]+) by (\S+) \(run (\S+)\)$", out, re.M)
    }
    metrics = storage.read(MODEL_METRICS).where((F.col(C.METRIC) == "ndcg") & (F.col(C.K) == 10))
    newest = (
        metrics.groupBy("dataset", C.MODEL)
        .agg(F.max_by(F.struct(C.VALUE, C.RUN_ID), F.struct("created_at", C.RUN_ID)).alias("run"))
        .select("dataset", C.MODEL, "run.*")
    )
    expected: dict[str, tuple[float, str, str]] = {}
    scored = [r for r in newest.collect() if r[C.VALUE] is not None]  # SQL sorts nulls last; none is best
    for row in sorted(scored, key=lambda r: (-r[C.VALUE], r[C.MODEL])):  # the notebook's order
        expected.setdefault(row["dataset"], (row[C.VALUE], row[C.MODEL], row[C.RUN_ID]))
    assert set(best) == set(expected) and best, out
    for dataset, (value, model, run_id) in best.items():
        assert (model, run_id) == expected[dataset][1:]
        assert value == pytest.approx(expected[dataset][0], abs=5e-5)  # printed rounded to 4 places
