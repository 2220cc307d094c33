"""Table maintenance: OPTIMIZE compacts, VACUUM deletes unreferenced files, rows never change.

``run_maintenance`` is tested on a tiny partitioned table whose file layout is known exactly (one file
per partition per commit), and the ``spotrec maintenance`` CLI step end to end on the same kind of table:
options reach the library, the result is recorded in ``ops.runs``, and mistakes exit with a message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from spotrec import cli
from spotrec.config import Config
from spotrec.logs import remove_handlers
from spotrec.steps.maintenance import MaintenanceError, parse_zorder, run_maintenance, select_tables
from spotrec.storage import Storage
from spotrec.tables import DISCOVER_WEEKLY, RUNS, TableSpec, all_tables


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``cli.main`` installs a root log handler on the test's captured stderr; take it off afterwards."""
    yield
    remove_handlers()


_EVENTS = TableSpec(
    "silver",
    "maintenance_probe",
    T.StructType([T.StructField("id", T.StringType(), False), T.StructField("day", T.StringType(), False)]),
    keys=("id",),
    partition_by=("day",),
)
_ABSENT = TableSpec("gold", "never_written", T.StructType([T.StructField("id", T.StringType(), False)]), keys=("id",))


def _files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*.parquet")}


def _three_small_commits(spark: SparkSession, storage: Storage, spec: TableSpec) -> None:
    """Three appends of rows in two partitions: six small files, one per partition per commit."""
    for batch in (["1", "2"], ["3"], ["4", "5"]):
        rows = [(i, "a") for i in batch] + [(i + "b", "b") for i in batch]
        storage.append(spec, spark.createDataFrame(rows, spec.schema))


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
def test_maintenance_compacts_each_partition_vacuums_old_files_and_keeps_the_rows(
    spark: SparkSession, storage: Storage
) -> None:
    _three_small_commits(spark, storage, _EVENTS)
    path = Path(storage.path(_EVENTS))
    assert len(_files(path)) == 6
    before = sorted(storage.read(_EVENTS).collect())

    done = run_maintenance(spark, storage, retain_hours=0, tables=[_EVENTS, _ABSENT], allow_short_retention=True)

    assert done == ["silver.maintenance_probe"]
    assert sorted(storage.read(_EVENTS).collect()) == before
    files = _files(path)
    assert len(files) == 2, f"one file per partition expected after OPTIMIZE + VACUUM, got {files}"
    assert {f.split("/")[0] for f in files} == {"day=a", "day=b"}
    assert spark.conf.get("spark.databricks.delta.retentionDurationCheck.enabled") == "true"


def test_maintenance_refuses_short_retention_before_touching_anything(spark: SparkSession, storage: Storage) -> None:
    storage.append(_EVENTS, spark.createDataFrame([("1", "a")], _EVENTS.schema))
    storage.append(_EVENTS, spark.createDataFrame([("2", "a")], _EVENTS.schema))
    version = storage.version(_EVENTS)
    with pytest.raises(ValueError, match="168"):
        run_maintenance(spark, storage, retain_hours=1, tables=[_EVENTS])
    with pytest.raises(ValueError, match="unknown table"):
        run_maintenance(spark, storage, tables=[_EVENTS], zorder_by={"gold.nope": ["id"]})
    assert storage.version(_EVENTS) == version


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
def test_maintenance_with_default_retention_compacts_but_keeps_time_travel(
    spark: SparkSession, storage: Storage
) -> None:
    storage.append(_EVENTS, spark.createDataFrame([("1", "a")], _EVENTS.schema))
    storage.append(_EVENTS, spark.createDataFrame([("2", "a")], _EVENTS.schema))
    assert run_maintenance(spark, storage, tables=[_EVENTS], zorder_by={"silver.maintenance_probe": ["id"]}) == [
        "silver.maintenance_probe"
    ]
    path = Path(storage.path(_EVENTS))
    assert len(_files(path)) == 3  # the compacted file plus the two old ones, still within 168 h
    assert sorted(r["id"] for r in storage.read(_EVENTS, version=0).collect()) == ["1"]
    assert sorted(r["id"] for r in storage.read(_EVENTS).collect()) == ["1", "2"]


def test_zorder_and_table_options_parse_or_fail_with_the_bad_value() -> None:
    assert parse_zorder(["silver.listen_events=user_id, track_id", "gold.interactions=user_idx"]) == {
        "silver.listen_events": ["user_id", "track_id"],
        "gold.interactions": ["user_idx"],
    }
    for bad in (["silver.listen_events"], ["silver.listen_events="], ["=user_id"]):
        with pytest.raises(MaintenanceError, match=r"layer\.table=column"):
            parse_zorder(bad)
    with pytest.raises(MaintenanceError, match="twice"):
        parse_zorder(["a.b=x", "a.b=y"])
    assert select_tables(None) == all_tables()
    assert [s.full_name for s in select_tables(["ops.runs", "silver.listen_events"])] == [
        "silver.listen_events",
        "ops.runs",
    ]  # catalogue order, not argument order
    with pytest.raises(MaintenanceError, match=r"gold\.nope"):
        select_tables(["gold.nope"])
    # model tables declared outside spotrec.tables are maintained too
    assert {"gold.rnn_recommendations", "gold.rl_playlists"} <= {s.full_name for s in all_tables()}


def _cli_settings(config: Config) -> list[str]:
    s = config.storage
    out = []
    for key, value in (
        ("root", s.root),
        ("raw_dir", s.raw_dir),
        ("checkpoint_dir", s.checkpoint_dir),
        ("artifacts_dir", s.artifacts_dir),
    ):
        out += ["--set", f"storage.{key}={value}"]
    return out


def _weekly_rows(spark: SparkSession, storage: Storage) -> None:
    """gold.discover_weekly (a real catalogue table, partitioned by week) in three commits of two weeks each."""
    import datetime as dt

    weeks = (dt.date(2026, 11, 16), dt.date(2026, 11, 23))
    for commit in range(3):
        rows = [(week, f"u{commit}", 1, f"t{commit}{w}", None, 1.0 - commit / 10, "v1") for w, week in enumerate(weeks)]
        storage.append(DISCOVER_WEEKLY, spark.createDataFrame(rows, DISCOVER_WEEKLY.schema))


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
def test_cli_maintenance_step_compacts_vacuums_and_records_the_run_in_lineage(
    spark: SparkSession, storage: Storage, config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    _weekly_rows(spark, storage)
    path = Path(storage.path(DISCOVER_WEEKLY))
    assert len(_files(path)) == 6
    rows = sorted(storage.read(DISCOVER_WEEKLY).collect())
    version = storage.version(DISCOVER_WEEKLY)

    code = cli.main(
        [
            "maintenance",
            *_cli_settings(config),
            *("--retain-hours", "0", "--allow-short-retention", "--table", "gold.discover_weekly"),
        ]
    )

    assert code == 0
    assert "optimized and vacuumed (retain 0 h) 1 tables: gold.discover_weekly" in capsys.readouterr().out
    files = _files(path)
    assert len(files) == 2, files
    assert {f.split("/")[0] for f in files} == {"week=2026-11-16", "week=2026-11-23"}
    assert sorted(storage.read(DISCOVER_WEEKLY).collect()) == rows
    (run,) = storage.read(RUNS).collect()
    assert (run["step"], run["status"]) == ("maintenance", "succeeded")
    assert run["inputs"] == {"gold.discover_weekly": version}
    assert run["outputs"] == {"gold.discover_weekly": version + 3}
    history = storage.delta_table(DISCOVER_WEEKLY).history().where(f"version > {version}").orderBy("version")
    assert [r["operation"] for r in history.collect()] == ["OPTIMIZE", "VACUUM START", "VACUUM END"]
    assert json.loads(run["config"])["storage"]["root"] == config.storage.root


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
def test_cli_maintenance_zorder_without_vacuum_keeps_the_old_files(
    spark: SparkSession, storage: Storage, config: Config
) -> None:
    _weekly_rows(spark, storage)
    path = Path(storage.path(DISCOVER_WEEKLY))
    rows = sorted(storage.read(DISCOVER_WEEKLY).collect())

    code = cli.main(
        [
            "maintenance",
            *_cli_settings(config),
            *("--no-vacuum", "--zorder", "gold.discover_weekly=user_id,rank", "--table", "gold.discover_weekly"),
        ]
    )

    assert code == 0
    assert len(_files(path)) == 6 + 2  # the Z-ordered file per week beside the six still referenced by history
    assert sorted(storage.read(DISCOVER_WEEKLY).collect()) == rows
    last = storage.delta_table(DISCOVER_WEEKLY).history(1).first()
    assert last["operation"] == "OPTIMIZE"
    assert json.loads(last["operationParameters"]["zOrderBy"]) == ["user_id", "rank"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--retain-hours", "1"], "below Delta's 168 h"),
        (["--table", "gold.nope"], "unknown table(s) ['gold.nope']"),
        (["--zorder", "gold.discover_weekly"], "layer.table=column"),
    ],
)
def test_cli_maintenance_refuses_unsafe_or_unknown_requests_with_one_line(
    spark: SparkSession,
    storage: Storage,
    config: Config,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    _weekly_rows(spark, storage)
    version = storage.version(DISCOVER_WEEKLY)

    assert cli.main(["maintenance", *_cli_settings(config), *options]) == 2

    err = capsys.readouterr().err
    assert err.startswith("spotrec maintenance: error: ") and message in err
    assert storage.version(DISCOVER_WEEKLY) == version
