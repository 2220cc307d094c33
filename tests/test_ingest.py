"""Validation rules, quarantine reasons, deduplication, row conservation and idempotence of ingest."""

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.ingest.validate import dedupe_events, validate_events
from spotrec.steps.ingest import ingest_events
from spotrec.tables import INGEST_LOG, QUARANTINE, READER_SCHEMA, SILVER_EVENTS, TRACKS

NOW = dt.datetime(2026, 11, 28, 12, 0, 0)


def raw_rows(spark, rows, source_file="f1.jsonl", source="test"):
    """Reader-shaped frame from dicts of canonical string fields (missing ones null)."""
    data = []
    for i, r in enumerate(rows, start=1):
        fields = {f.name: None for f in READER_SCHEMA.fields}
        fields.update(source=source, source_file=r.pop("_file", source_file), record_no=i, raw=str(r))
        fields.update(r)
        data.append(tuple(fields[f.name] for f in READER_SCHEMA.fields))
    return spark.createDataFrame(data, READER_SCHEMA)


def good(**kw):
    row = dict(user_id="u1", track_id="t1", ts="2026-11-01T10:00:00Z", ms_played="200000")
    row.update(kw)
    return row


def with_bookkeeping(df):
    return df.withColumn(C.INGEST_RUN_ID, F.lit("r1")).withColumn(C.INGEST_TIME, F.lit(NOW).cast("timestamp"))


def test_each_bad_input_gets_its_reason(spark):
    raw = raw_rows(
        spark,
        [
            {},  # 1 malformed: the reader could not parse anything
            good(user_id=None),  # 2
            good(user_id="  "),  # 3 blank counts as missing
            good(track_id=None),  # 4
            good(ts="yesterday"),  # 5
            good(ts="2099-01-01T00:00:00Z"),  # 6
            good(ms_played="lots"),  # 7
            good(ms_played="-5"),  # 8
            good(ms_played=str(5 * 60 * 60 * 1000)),  # 9: 5 hours
            good(ts="2026-11-01 10:00", ms_played="1000.0"),  # 10: clean (basic export spelling, float ms)
            good(ms_played=None),  # 11: clean: scrobbles have no play length
        ],
    )
    clean, quarantine = validate_events(with_bookkeeping(raw), now=NOW)
    reasons = {r[C.RECORD_NO]: r[C.REASON] for r in quarantine.collect()}
    assert reasons == {
        1: "malformed_record",
        2: "missing_user_id",
        3: "missing_user_id",
        4: "missing_track_id",
        5: "unparseable_ts",
        6: "future_ts",
        7: "invalid_ms_played",
        8: "negative_ms_played",
        9: "absurd_ms_played",
    }
    rows = clean.select(C.RECORD_NO, C.TS, C.MS_PLAYED, C.EVENT_DATE).orderBy(C.RECORD_NO).collect()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (10, dt.datetime(2026, 11, 1, 10, 0), 1000, dt.date(2026, 11, 1)),
        (11, dt.datetime(2026, 11, 1, 10, 0), None, dt.date(2026, 11, 1)),
    ]


def test_types_are_parsed_and_ids_trimmed(spark):
    raw = raw_rows(
        spark,
        [
            good(
                user_id=" u1 ",
                skipped="True",
                shuffle="0",
                saved=None,
                session_position="3",
                track_duration_ms="0",
            ),
            good(ts="2026-11-01T11:00:00+01:00", skipped="maybe"),
        ],
    )
    clean, _ = validate_events(with_bookkeeping(raw), now=NOW)
    got = clean.select(C.USER_ID, C.TS, C.SKIPPED, C.SHUFFLE, C.SAVED, C.SESSION_POSITION, C.TRACK_DURATION_MS)
    expected = spark.createDataFrame(
        [
            ("u1", dt.datetime(2026, 11, 1, 10), True, False, None, 3, None),
            ("u1", dt.datetime(2026, 11, 1, 10), None, None, None, None, None),  # +01:00 normalised to UTC
        ],
        "user_id string, ts timestamp, skipped boolean, shuffle boolean, saved boolean, session_position int, "
        "track_duration_ms long",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_same_play_gets_same_event_id_and_first_copy_is_kept(spark):
    raw = raw_rows(
        spark,
        [good(), good(ts="2026-11-01T10:00:00.000Z"), good(ms_played="1"), good(event_id="s1:4")],
    )
    clean, _ = validate_events(with_bookkeeping(raw), now=NOW)
    ids = {r[C.RECORD_NO]: r[C.EVENT_ID] for r in clean.collect()}
    assert ids[1] == ids[2] != ids[3]
    assert ids[4] == "test:s1:4"  # a natural id is kept, namespaced by source
    deduped = dedupe_events(clean)
    assert deduped.count() == 3
    assert deduped.where(F.col(C.EVENT_ID) == ids[1]).select(C.SOURCE_FILE).collect()[0][0] == "f1.jsonl"


@pytest.mark.slow  # a whole step end to end: in make test, not make test-fast
def test_rows_are_conserved_and_rerun_changes_nothing(spark, storage, config):
    batch1 = raw_rows(
        spark,
        [
            good(),
            good(),
            good(track_id="t2", track_name="Song", artist_name="Band"),
            good(user_id=None),
            good(ms_played="-1"),
        ],
        source_file="a.jsonl",
    )
    c1 = ingest_events(spark, storage, config, batch1, "run1", now=NOW)
    assert (c1.read, c1.silver_new, c1.quarantined, c1.duplicates) == (5, 2, 2, 1)

    # A second file repeating one known event plus one new one: the repeat is a duplicate of a kept row.
    batch2 = raw_rows(spark, [good(), good(track_id="t3")], source_file="b.jsonl")
    c2 = ingest_events(spark, storage, config, batch2, "run2", now=NOW)
    assert (c2.read, c2.silver_new, c2.quarantined, c2.duplicates) == (2, 1, 0, 1)

    versions = {spec.full_name: storage.version(spec) for spec in (SILVER_EVENTS, QUARANTINE, TRACKS)}
    c3 = ingest_events(spark, storage, config, batch1, "run3", now=NOW)
    assert (c3.read, c3.silver_new, c3.quarantined, c3.duplicates) == (5, 0, 2, 3)
    assert {spec.full_name: storage.version(spec) for spec in (SILVER_EVENTS, QUARANTINE, TRACKS)} == versions

    silver = storage.read(SILVER_EVENTS)
    assert sorted(r[C.TRACK_ID] for r in silver.collect()) == ["t1", "t2", "t3"]
    assert storage.read(QUARANTINE).count() == 2
    tracks = {r[C.TRACK_ID]: (r[C.TRACK_NAME], r[C.ARTIST_NAME]) for r in storage.read(TRACKS).collect()}
    assert tracks["t2"] == ("Song", "Band")
    log = storage.read(INGEST_LOG).where(F.col(C.INGEST_RUN_ID) == "run1").collect()
    assert [(r["rows_read"], r["silver_new"], r["quarantined"], r["duplicates"]) for r in log] == [(5, 2, 2, 1)]


def test_empty_input_writes_nothing(spark, storage, config):
    empty = spark.createDataFrame([], READER_SCHEMA)
    counts = ingest_events(spark, storage, config, empty, "run1", now=NOW)
    assert (counts.read, counts.silver_new, counts.quarantined, counts.duplicates) == (0, 0, 0, 0)
    assert not storage.exists(SILVER_EVENTS)
