"""Known answers for the popularity and co-occurrence baselines, and the harness scoring them end to end."""

from __future__ import annotations

import math

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from spotrec import columns as C
from spotrec.evaluation import metrics as M
from spotrec.evaluation.baselines import CooccurrenceRecommender, PopularityRecommender
from spotrec.evaluation.harness import evaluate, format_table
from spotrec.evaluation.recommender import InteractionRecommender

RECS_DDL = "user_id string, track_id string, rank int, score double"

# Planted matrix: two taste groups, a* and b*, bridged by u2 (a* and b1) and u5 (a1 and b1).
#   u1: a1 a2 a3      u2: a1 a2 a3 b1      u3: b1 b2      u4: b1 b2      u5: a1 b1
# Distinct listeners: b1 4, a1 3, a2 2, a3 2, b2 2.
HISTORY = {
    "u1": ["a1", "a2", "a3"],
    "u2": ["a1", "a2", "a3", "b1"],
    "u3": ["b1", "b2"],
    "u4": ["b1", "b2"],
    "u5": ["a1", "b1"],
}


def _interactions(spark: SparkSession) -> DataFrame:
    rows = [(u, t, 1.0) for u, tracks in HISTORY.items() for t in tracks]
    rows.append(("u1", "a1", 1.0))  # a repeat row must not count u1 twice
    return spark.createDataFrame(rows, "user_id string, track_id string, confidence double")


def _heard(spark: SparkSession) -> DataFrame:
    return _interactions(spark).select(C.USER_ID, C.TRACK_ID).distinct()


def _users(spark: SparkSession, *ids: str) -> DataFrame:
    return spark.createDataFrame([(u,) for u in ids], "user_id string")


def test_both_baselines_satisfy_the_recommender_protocol() -> None:
    models: list[InteractionRecommender] = [PopularityRecommender(), CooccurrenceRecommender()]
    assert [m.name for m in models] == ["popularity", "cooccurrence"]
    # The harness fits exactly the models that fit on interactions (isinstance on the runtime protocol).
    assert all(isinstance(m, InteractionRecommender) for m in models)


def test_popularity_excludes_heard_tracks(spark: SparkSession) -> None:
    model = PopularityRecommender().fit(_interactions(spark))
    exclude = _heard(spark).unionByName(_users(spark, "u1").selectExpr("user_id", "'not-in-catalogue' AS track_id"))
    got = model.recommend(_users(spark, "u1", "u3", "u5", "u9"), 2, exclude)
    # Popularity order: b1 (4), a1 (3), then the 2s by id: a2, a3, b2.
    expected = spark.createDataFrame(
        [
            ("u1", "b1", 1, 4.0),  # heard a1 a2 a3: b1, then b2 (the 3 excluded push it to global rank 5)
            ("u1", "b2", 2, 2.0),
            ("u3", "a1", 1, 3.0),  # heard b1 b2
            ("u3", "a2", 2, 2.0),
            ("u5", "a2", 1, 2.0),  # heard a1 b1
            ("u5", "a3", 2, 2.0),
            ("u9", "b1", 1, 4.0),  # unknown user: plain popularity
            ("u9", "a1", 2, 3.0),
        ],
        RECS_DDL,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_popularity_without_exclusions_and_unfitted(spark: SparkSession) -> None:
    with pytest.raises(RuntimeError, match="fit"):
        PopularityRecommender().recommend(_users(spark, "u1"), 2)
    got = PopularityRecommender().fit(_interactions(spark)).recommend(_users(spark, "u1"), 3)
    expected = spark.createDataFrame([("u1", "b1", 1, 4.0), ("u1", "a1", 2, 3.0), ("u1", "a2", 3, 2.0)], RECS_DDL)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_cooccurrence_neighbours_are_cosine_top_k(spark: SparkSession) -> None:
    model = CooccurrenceRecommender(max_neighbours=1).fit(_interactions(spark))
    # cos(x, y) = shared listeners / sqrt(listeners(x) * listeners(y)):
    #   a1-a2 = a1-a3 = 2 / sqrt(3 * 2); a2-a3 = 2 / sqrt(2 * 2) = 1; a1-b1 = 2 / sqrt(3 * 4);
    #   a2-b1 = a3-b1 = 1 / sqrt(2 * 4); b1-b2 = 2 / sqrt(4 * 2).
    # Best per track (ties to the smaller id): a1 -> a2 (tie with a3), a2 -> a3, a3 -> a2, b1 -> b2, b2 -> b1.
    expected = spark.createDataFrame(
        [
            ("a1", "a2", 2 / math.sqrt(6)),
            ("a2", "a3", 1.0),
            ("a3", "a2", 1.0),
            ("b1", "b2", 2 / math.sqrt(8)),
            ("b2", "b1", 2 / math.sqrt(8)),
        ],
        "track_id string, neighbour_id string, score double",
    )
    assert_approx_df_equality(model.neighbours, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_cooccurrence_recommends_the_planted_neighbours_and_never_heard_tracks(spark: SparkSession) -> None:
    model = CooccurrenceRecommender().fit(_interactions(spark))
    got = model.recommend(_users(spark, "u1", "u3", "u5"), 3, _heard(spark))
    a1_a2 = 2 / math.sqrt(6)
    a1_b1 = 2 / math.sqrt(12)
    a2_b1 = 1 / math.sqrt(8)
    b1_b2 = 2 / math.sqrt(8)
    expected = spark.createDataFrame(
        [
            # u1 (a1 a2 a3): only b1 is linked to its history: a1-b1 + a2-b1 + a3-b1. Fewer than n, no filler.
            ("u1", "b1", 1, a1_b1 + 2 * a2_b1),
            # u3 (b1 b2): b1's neighbours a1 > a2 = a3 (b2-only neighbour b1 is heard).
            ("u3", "a1", 1, a1_b1),
            ("u3", "a2", 2, a2_b1),
            ("u3", "a3", 3, a2_b1),
            # u5 (a1 b1): a2 = a3 = a1-a2 + b1-a2 (tie to the smaller id), then b2 via b1.
            ("u5", "a2", 1, a1_a2 + a2_b1),
            ("u5", "a3", 2, a1_a2 + a2_b1),
            ("u5", "b2", 3, b1_b2),
        ],
        RECS_DDL,
    )
    assert_approx_df_equality(got, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_cooccurrence_history_cap_keeps_the_most_confident_tracks(spark: SparkSession) -> None:
    rows = [
        ("u1", "a", 5.0),
        ("u1", "b", 1.0),
        ("u2", "a", 1.0),
        ("u2", "c", 1.0),
        ("u3", "b", 1.0),
        ("u3", "d", 1.0),
    ]
    interactions = spark.createDataFrame(rows, "user_id string, track_id string, confidence double")
    # max_history = 1: u1 keeps only a (confidence 5 > 1), u2 keeps a (tie -> smaller id), u3 keeps b.
    # Every capped history has one track, so no pair co-occurs and u1 gets nothing.
    model = CooccurrenceRecommender(max_history=1).fit(interactions)
    assert model.recommend(_users(spark, "u1"), 3).count() == 0
    # Without the cap, u1's history a, b links to c (via u2) and d (via u3), each cos = 1 / sqrt(2 * 1).
    full = CooccurrenceRecommender().fit(interactions).recommend(_users(spark, "u1"), 3, interactions)
    expected = spark.createDataFrame([("u1", "c", 1, 1 / math.sqrt(2)), ("u1", "d", 2, 1 / math.sqrt(2))], RECS_DDL)
    assert_approx_df_equality(full, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_harness_scores_popularity_by_hand(spark: SparkSession) -> None:
    train = _interactions(spark)
    relevant = spark.createDataFrame([("u3", "a1"), ("u5", "a3")], "user_id string, track_id string")
    tracks = spark.createDataFrame(
        [(t, "A" if t.startswith("a") else "B") for t in ["a1", "a2", "a3", "b1", "b2"]],
        "track_id string, artist_id string",
    )
    results = evaluate([PopularityRecommender(), CooccurrenceRecommender()], train, relevant, k=2, n=2, tracks=tracks)
    assert [r.model for r in results] == ["popularity", "cooccurrence"]
    # Popularity, heard excluded: u3 -> a1, a2 (hit at 1); u5 -> a2, a3 (hit at 2).
    # u3: P 1/2, R 1, AP 1, NDCG 1.  u5: P 1/2, R 1, AP (1/2) / 1, NDCG (1/log2 3) / 1.
    # Coverage {a1, a2, a3} / 5 training tracks. Novelty: -log2 share (of 5 users): a1 log2(5/3), a2 x2
    # and a3 log2(5/2). Popularity percentile: a1 (3 listeners) 3/4, a2 and a3 (2, the fewest) 0.
    # Artists: A, A per user -> 1/2.
    expected = {
        M.PRECISION: 0.5,
        M.RECALL: 1.0,
        M.MAP: 0.75,
        M.NDCG: (1 + 1 / math.log2(3)) / 2,
        M.HIT_RATE: 1.0,
        M.COVERAGE: 3 / 5,
        M.NOVELTY: (math.log2(5 / 3) + 3 * math.log2(5 / 2)) / 4,
        M.POPULARITY_BIAS: 0.75 / 4,
        M.ARTIST_DIVERSITY: 0.5,
    }
    assert results[0].metrics == pytest.approx(expected, abs=1e-12)
    assert results[0].users == 2
    # Co-occurrence (see the planted test): u3 -> a1, a2 and u5 -> a2, a3: the same lists, same scores.
    assert results[1].metrics == pytest.approx(expected, abs=1e-12)
    table = format_table(results)
    assert table.splitlines()[0].startswith("| model        | ndcg@2 |")
    assert "| popularity   |" in table and "| cooccurrence |" in table
    with pytest.raises(ValueError, match="n \\(1\\) must be >= k \\(2\\)"):
        evaluate([PopularityRecommender()], train, relevant, k=2, n=1)
