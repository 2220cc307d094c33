"""Blocked top-N: equal to brute force (ties included), never a heard track; cosine neighbours."""

from __future__ import annotations

import numpy as np
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from spotrec.weekly.topn import SIMILAR_SCHEMA, TOP_N_SCHEMA, top_n_rows, top_n_similar, top_n_unheard

FACTORS = "idx int, features array<float>"


def test_top_n_rows_breaks_ties_at_the_cutoff_by_smaller_id() -> None:
    # Row 0: ids 10..15 with scores 1, 3, 3, 3, 0, 3 -> top 2 are the two smallest ids scoring 3: 11, 12.
    # Row 1: the best item is masked; -inf items never come back even when n exceeds the finite ones.
    scores = np.array(
        [
            [1.0, 3.0, 3.0, 3.0, 0.0, 3.0],
            [-np.inf, 2.0, -np.inf, -np.inf, -np.inf, -np.inf],
        ]
    )
    ids = np.arange(10, 16)
    top = top_n_rows(scores, ids, 2)
    assert [(r, list(i), list(s)) for r, i, s in top] == [(0, [11, 12], [3.0, 3.0]), (1, [11], [2.0])]
    everything = top_n_rows(scores, ids, 10)
    assert list(everything[0][1]) == [11, 12, 13, 15, 10, 14]


def _brute_force(users: dict[int, list[int]], tracks: dict[int, list[int]], heard: set, n: int) -> list[tuple]:
    rows = []
    for u, uf in users.items():
        scored = [(-sum(a * b for a, b in zip(uf, tf)), t) for t, tf in tracks.items() if (u, t) not in heard]
        for rank, (neg, t) in enumerate(sorted(scored)[:n], start=1):
            rows.append((u, t, rank, float(-neg)))
    return rows


def test_top_n_unheard_equals_brute_force_and_skips_heard(spark: SparkSession) -> None:
    # Small integer factors: every dot product is exact in floating point, and many scores tie, so the
    # comparison checks the track_idx tie-break as well as the ranking.
    rng = np.random.default_rng(3)
    users = {u: [int(x) for x in rng.integers(-2, 3, size=3)] for u in range(7)}
    tracks = {t: [int(x) for x in rng.integers(-2, 3, size=3)] for t in range(100, 112)}
    heard = {(u, t) for u in users for t in tracks if rng.random() < 0.3}
    heard = {(u, t) for u, t in heard if u != 6} | {(6, t) for t in tracks if t != 105}  # all but one
    uf = spark.createDataFrame([(u, [float(x) for x in f]) for u, f in users.items()], FACTORS)
    tf = spark.createDataFrame([(t, [float(x) for x in f]) for t, f in tracks.items()], FACTORS)
    heard_df = spark.createDataFrame(sorted(heard), "user_idx int, track_idx int")
    got = top_n_unheard(
        uf.withColumnRenamed("idx", "user_idx"), tf.withColumnRenamed("idx", "track_idx"), heard_df, 4, 3
    )
    expected = spark.createDataFrame(_brute_force(users, tracks, heard, 4), TOP_N_SCHEMA)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    rows = got.collect()
    assert not {(r.user_idx, r.track_idx) for r in rows} & heard
    assert [(r.track_idx, r.rank) for r in rows if r.user_idx == 6] == [(105, 1)]


def test_top_n_unheard_without_exclusions(spark: SparkSession) -> None:
    # u0 = (1, 0): scores t1 = 2, t2 = 1, t3 = 2 -> t1 (tie with t3, smaller id), t3.
    uf = spark.createDataFrame([(0, [1.0, 0.0])], "user_idx int, features array<float>")
    tf = spark.createDataFrame(
        [(1, [2.0, 0.0]), (2, [1.0, 5.0]), (3, [2.0, -1.0])], "track_idx int, features array<float>"
    )
    expected = spark.createDataFrame([(0, 1, 1, 2.0), (0, 3, 2, 2.0)], TOP_N_SCHEMA)
    assert_df_equality(top_n_unheard(uf, tf, None, 2), expected, ignore_row_order=True, ignore_nullable=True)


def test_top_n_similar_is_cosine_and_excludes_self(spark: SparkSession) -> None:
    # t0 and t1 point the same way (cosine 1); t2 is orthogonal to both (cosine 0, tie -> smaller id).
    tf = spark.createDataFrame(
        [(0, [1.0, 0.0]), (1, [2.0, 0.0]), (2, [0.0, 3.0])], "track_idx int, features array<float>"
    )
    expected = spark.createDataFrame([(0, 1, 1, 1.0), (1, 0, 1, 1.0), (2, 0, 1, 0.0)], SIMILAR_SCHEMA)
    assert_df_equality(top_n_similar(tf, 1), expected, ignore_row_order=True, ignore_nullable=True)
