"""Each interaction weight's effect, on hand-computed 3-row examples."""

import datetime as dt
import random

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from spotrec.config import MatrixConfig
from spotrec.features.interactions import build_interactions, extend_index, interactions_from_counts
from spotrec.features.ordinal import global_row_number, global_running_sum

AS_OF = dt.datetime(2026, 3, 1)
EVENTS_DDL = (
    "user_id string, track_id string, ts timestamp, ms_played long, track_duration_ms long, "
    "skipped boolean, saved boolean"
)
OUT_COLS = ["user_id", "track_id", "confidence", "plays", "skips", "saves"]
OUT_DDL = "user_id string, track_id string, confidence double, plays long, skips long, saves long"
NO_EXTRAS = dict(stream_weight=1.0, save_boost=0.0, skip_penalty=0.0, half_life_days=0.0)


def _run(spark, rows, **weights):
    events = spark.createDataFrame(rows, EVENTS_DDL)
    cfg = MatrixConfig(**{**NO_EXTRAS, **weights})
    return build_interactions(events, weights=cfg, as_of=AS_OF).select(*OUT_COLS)


def _check(spark, got, expected_rows):
    expected = spark.createDataFrame(expected_rows, OUT_DDL)
    assert_approx_df_equality(got, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_stream_counts_by_fraction_played_capped_at_one(spark):
    got = _run(
        spark,
        [
            ("u1", "t1", AS_OF, 105_000, 210_000, False, False),  # half the track: 0.5
            ("u1", "t1", AS_OF, 210_000, 210_000, False, False),  # full: 1.0
            (
                "u1",
                "t2",
                AS_OF,
                300_000,
                210_000,
                False,
                False,
            ),  # longer than the track (seek back): capped 1.0
        ],
    )
    _check(spark, got, [("u1", "t1", 1.5, 2, 0, 0), ("u1", "t2", 1.0, 1, 0, 0)])


def test_unknown_duration_uses_the_configured_default(spark):
    got = _run(spark, [("u1", "t1", AS_OF, 100_000, None, False, False)], default_duration_ms=200_000)
    _check(spark, got, [("u1", "t1", 0.5, 1, 0, 0)])


def test_save_adds_an_explicit_boost(spark):
    got = _run(
        spark,
        [
            ("u1", "t1", AS_OF, 210_000, 210_000, False, True),  # 1.0 + 3
            ("u1", "t2", AS_OF, 210_000, 210_000, False, False),  # 1.0
            ("u1", "t2", AS_OF, 210_000, 210_000, False, None),  # unknown save flag = not saved: 1.0
        ],
        save_boost=3.0,
    )
    _check(spark, got, [("u1", "t1", 4.0, 1, 0, 1), ("u1", "t2", 2.0, 2, 0, 0)])


def test_skips_count_against_and_are_inferred_from_short_plays(spark):
    got = _run(
        spark,
        [
            ("u1", "t1", AS_OF, 20_000, 200_000, True, False),  # 0.1 - 0.5
            ("u1", "t2", AS_OF, 10_000, 200_000, None, False),  # no flag, < 30 s: a skip: 0.05 - 0.5
            ("u1", "t3", AS_OF, 40_000, 200_000, None, False),  # no flag, >= 30 s: a stream: 0.2
        ],
        skip_penalty=0.5,
    )
    _check(spark, got, [("u1", "t1", -0.4, 1, 1, 0), ("u1", "t2", -0.45, 1, 1, 0), ("u1", "t3", 0.2, 1, 0, 0)])


def test_older_streams_decay_with_half_life_but_saves_do_not(spark):
    got = _run(
        spark,
        [
            ("u1", "t1", AS_OF - dt.timedelta(days=10), 210_000, 210_000, False, False),  # 0.5
            ("u1", "t2", AS_OF - dt.timedelta(days=20), 210_000, 210_000, False, False),  # 0.25
            ("u1", "t3", AS_OF - dt.timedelta(days=20), 210_000, 210_000, False, True),  # 0.25 + 2 (no decay)
        ],
        half_life_days=10.0,
        save_boost=2.0,
    )
    _check(spark, got, [("u1", "t1", 0.5, 1, 0, 0), ("u1", "t2", 0.25, 1, 0, 0), ("u1", "t3", 2.25, 1, 0, 1)])


def test_plays_without_length_count_as_full_unless_skipped(spark):
    got = _run(
        spark,
        [
            ("u1", "t1", AS_OF, None, None, None, False),  # a scrobble: full play
            ("u1", "t2", AS_OF, None, None, True, False),  # an MSSD skip: 0 - 0.5
            ("u1", "t2", AS_OF, None, None, False, False),  # an MSSD listen: 1.0
        ],
        skip_penalty=0.5,
    )
    _check(spark, got, [("u1", "t1", 1.0, 1, 0, 0), ("u1", "t2", 0.5, 2, 1, 0)])


def test_min_play_fraction_ignores_sampled_intros(spark):
    got = _run(
        spark,
        [
            ("u1", "t1", AS_OF, 40_000, 400_000, False, False),
            ("u1", "t2", AS_OF, 200_000, 400_000, False, False),
        ],
        min_play_fraction=0.25,
    )
    _check(spark, got, [("u1", "t1", 0.0, 1, 0, 0), ("u1", "t2", 0.5, 1, 0, 0)])


def test_decay_reference_defaults_to_newest_event(spark):
    events = spark.createDataFrame(
        [
            ("u1", "t1", dt.datetime(2026, 1, 11), 210_000, 210_000, False, False),
            ("u1", "t2", dt.datetime(2026, 1, 1), 210_000, 210_000, False, False),
        ],
        EVENTS_DDL,
    )
    got = build_interactions(events, weights=MatrixConfig(**{**NO_EXTRAS, "half_life_days": 10.0}))
    _check(spark, got.select(*OUT_COLS), [("u1", "t1", 1.0, 1, 0, 0), ("u1", "t2", 0.5, 1, 0, 0)])


def test_counts_become_log1p_confidence(spark):
    counts = spark.createDataFrame(
        [("u1", "artist:5", 9), ("u2", "artist:5", 0)], "user_id string, track_id string, play_count long"
    )
    got = interactions_from_counts(counts).select(*OUT_COLS)
    import math

    _check(spark, got, [("u1", "artist:5", math.log(10.0), 9, 0, 0), ("u2", "artist:5", 0.0, 0, 0, 0)])
    with pytest.raises(ValueError, match="count_transform"):
        interactions_from_counts(counts, transform="sqrt")


def test_index_is_stable_and_extends_after_the_maximum(spark):
    first = extend_index(None, spark.createDataFrame([("b",), ("a",), ("a",)], "user_id string"), "user_id", "user_idx")
    assert_df_equality(
        first,
        spark.createDataFrame([("a", 0), ("b", 1)], "user_id string, user_idx int"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    second = extend_index(
        first, spark.createDataFrame([("c",), ("a",), ("0",)], "user_id string"), "user_id", "user_idx"
    )
    expected = spark.createDataFrame([("a", 0), ("b", 1), ("0", 2), ("c", 3)], "user_id string, user_idx int")
    assert_df_equality(second, expected, ignore_row_order=True, ignore_nullable=True)


def test_index_numbering_equals_a_global_sort_for_any_partitioning(spark):
    """Range partitions + per-partition offsets give row_number() over (order by id) exactly, in any input order."""
    ids = [f"u{i:03d}" for i in range(57)]
    expected = [(u, n) for n, u in enumerate(sorted(ids))]
    for seed, parts in ((1, 1), (2, 5), (3, 16)):
        shuffled = random.Random(seed).sample(ids, len(ids))
        frame = spark.createDataFrame([(u,) for u in shuffled], "user_id string").repartition(parts)
        got = extend_index(None, frame, "user_id", "user_idx")
        assert sorted(tuple(r) for r in got.collect()) == sorted(expected)


def test_global_row_number_and_running_sum_match_the_windows(spark):
    rows = [("a", 3, 2), ("b", 1, 5), ("c", 3, 1), ("d", 2, 0), ("e", 1, 4)]
    df = spark.createDataFrame(rows, "k string, v int, w int").repartition(3)
    numbered = global_row_number(df, [F.desc("v"), "k"], "n", start=10, partitions=4)
    assert sorted((r.k, r.n) for r in numbered.collect()) == [("a", 10), ("b", 13), ("c", 11), ("d", 12), ("e", 14)]
    summed = global_running_sum(df, ["v", "k"], "w", "before", total="all", partitions=4)
    # order: b(1,5) e(1,4) d(2,0) a(3,2) c(3,1)
    assert sorted((r.k, r.before, r.all) for r in summed.collect()) == [
        ("a", 9, 12),
        ("b", 0, 12),
        ("c", 11, 12),
        ("d", 9, 12),
        ("e", 5, 12),
    ]
