import datetime as dt
from pathlib import Path

import pytest
from chispa import assert_df_equality

from spotrec import columns as C
from spotrec.errors import MissingTableError, SchemaMismatchError
from spotrec.storage import Storage
from spotrec.tables import PLAY_COUNTS, SILVER_EVENTS, conform


def _counts(spark, rows):
    return spark.createDataFrame(rows, "user_id string, track_id string, play_count long, source string")


def test_merge_new_inserts_only_unseen_keys_and_is_idempotent(spark, storage: Storage) -> None:
    storage.merge_new(PLAY_COUNTS, _counts(spark, [("u1", "t1", 3, "x"), ("u1", "t2", 1, "x")]))
    storage.merge_new(PLAY_COUNTS, _counts(spark, [("u1", "t1", 99, "x"), ("u2", "t1", 5, "x")]))
    v = storage.version(PLAY_COUNTS)
    storage.merge_new(PLAY_COUNTS, _counts(spark, [("u2", "t1", 5, "x")]))
    expected = _counts(spark, [("u1", "t1", 3, "x"), ("u1", "t2", 1, "x"), ("u2", "t1", 5, "x")])
    assert_df_equality(storage.read(PLAY_COUNTS), expected, ignore_row_order=True, ignore_nullable=True)
    assert storage.version(PLAY_COUNTS) == v  # a MERGE that inserts nothing commits nothing


def test_upsert_updates_matching_keys(spark, storage: Storage) -> None:
    storage.upsert(PLAY_COUNTS, _counts(spark, [("u1", "t1", 3, "x")]))
    storage.upsert(PLAY_COUNTS, _counts(spark, [("u1", "t1", 4, "x"), ("u3", "t9", 1, "x")]))
    expected = _counts(spark, [("u1", "t1", 4, "x"), ("u3", "t9", 1, "x")])
    assert_df_equality(storage.read(PLAY_COUNTS), expected, ignore_row_order=True, ignore_nullable=True)


def test_replace_where_touches_one_partition(spark, storage: Storage) -> None:
    def events(rows):
        df = spark.createDataFrame(rows, "event_id string, d date")
        for f in SILVER_EVENTS.schema.fields:
            if f.name not in (C.EVENT_ID,):
                df = df.withColumn(f.name, df["d"] if f.name == C.EVENT_DATE else _const(f))
        return df.drop("d")

    day1, day2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    storage.overwrite(SILVER_EVENTS, events([("a", day1), ("b", day2)]))
    storage.replace_where(SILVER_EVENTS, events([("c", day2)]), f"{C.EVENT_DATE} = '2026-01-02'")
    got = sorted((r[C.EVENT_ID], r[C.EVENT_DATE]) for r in storage.read(SILVER_EVENTS).collect())
    assert got == [("a", day1), ("c", day2)]


def _const(field):
    from pyspark.sql import functions as F

    defaults = {"string": "x", "bigint": 1, "int": 1, "boolean": False, "timestamp": None}
    value = defaults.get(field.dataType.simpleString())
    if field.dataType.simpleString() == "timestamp":
        return F.lit(dt.datetime(2026, 1, 1)).cast("timestamp")
    return F.lit(value).cast(field.dataType)


def test_missing_table_names_the_step_to_run(storage: Storage) -> None:
    with pytest.raises(MissingTableError, match="run `spotrec ingest` first"):
        storage.read(PLAY_COUNTS)


def test_conform_rejects_missing_columns(spark) -> None:
    df = spark.createDataFrame([("u1", "t1")], "user_id string, track_id string")
    with pytest.raises(SchemaMismatchError, match=r"missing column\(s\) \['play_count', 'source'\]"):
        conform(df, PLAY_COUNTS)


def test_table_summary_counts_come_from_the_delta_log_and_equal_count(spark, storage: Storage) -> None:
    """Row counts read from _delta_log equal count() after append, overwrite, MERGE and across a checkpoint."""
    from spotrec.steps.tables import log_summary, summarize_tables

    path = Path(storage.path(PLAY_COUNTS))

    def check() -> None:
        got = log_summary(path)
        assert got is not None, "the local log should be readable without Spark"
        assert got == (storage.read(PLAY_COUNTS).count(), storage.version(PLAY_COUNTS))

    storage.append(PLAY_COUNTS, _counts(spark, [("u1", "t1", 3, "x"), ("u1", "t2", 1, "x")]))
    check()
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '2')")
    storage.append(PLAY_COUNTS, _counts(spark, [("u2", "t1", 5, "x")]))
    check()
    storage.merge_new(PLAY_COUNTS, _counts(spark, [("u1", "t1", 9, "x"), ("u3", "t3", 1, "x")]))
    storage.upsert(PLAY_COUNTS, _counts(spark, [("u1", "t1", 4, "x"), ("u4", "t4", 1, "x")]))
    assert any(".checkpoint." in p.name for p in (path / "_delta_log").iterdir())
    check()
    storage.overwrite(PLAY_COUNTS, _counts(spark, [("u9", "t9", 1, "x")]))
    check()
    spark.sql(f"DELETE FROM delta.`{path}` WHERE user_id = 'nobody'")  # a commit that changes nothing
    check()
    line = [s for s in summarize_tables(storage).splitlines() if s.startswith(PLAY_COUNTS.full_name)]
    assert line and line[0].split()[1:3] == ["1", str(storage.version(PLAY_COUNTS))]


def test_concurrent_ensure_of_one_table_leaves_it_usable_by_both(spark, storage: Storage) -> None:
    """Two ingests creating the same missing table at once (the race tests/test_faults.py met): both calls
    return, the table exists once with its schema, and a write right after either call succeeds."""
    import threading

    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def create() -> None:
        try:
            barrier.wait()
            storage.ensure(PLAY_COUNTS)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert storage.read(PLAY_COUNTS).schema == PLAY_COUNTS.schema
    storage.merge_new(PLAY_COUNTS, _counts(spark, [("u1", "t1", 3, "hetrec")]))
    assert storage.read(PLAY_COUNTS).count() == 1
