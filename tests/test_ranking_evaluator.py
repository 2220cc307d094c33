"""Our ranking metrics against Spark's own, ``pyspark.ml.evaluation.RankingEvaluator``, on the same lists.

The lists are chosen so that the usual definitional choices would show: a user with more relevant items
than k (AP normalised by min(k, |R|) or by |R|; the NDCG ideal cut at k), a list shorter than k (precision
over k or over the list), a hit beyond k, a user without recommendations and one without relevant items.
Result: on the users of ``relevant`` the four metrics are equal. The one difference is which users are
averaged, documented in :func:`spotrec.evaluation.metrics.ranking_metrics` and asserted exactly below.
"""

from __future__ import annotations

import pytest
from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import DataFrame, SparkSession

from spotrec.evaluation import metrics as M

RECS = {
    "u1": ["a", "x", "b", "y"],  # hits at 1 and 3
    "u2": ["c", "d", "z", "e"],  # |R| = 4: hits at 1, 2 and 4 (beyond k = 3)
    "u3": ["p", "q"],  # shorter than k, no hit
    "u4": ["p", "h"],  # shorter than k, hit at 2
    "u6": ["a", "c"],  # no relevant items
}
RELEVANT = {
    "u1": ["a", "b"],
    "u2": ["c", "d", "e", "f"],
    "u3": ["g"],
    "u4": ["h"],
    "u5": ["i"],  # no recommendations
}
SPARK_METRICS = {
    M.PRECISION: "precisionAtK",
    M.RECALL: "recallAtK",
    M.NDCG: "ndcgAtK",
    M.MAP: "meanAveragePrecisionAtK",
}


def _ours(spark: SparkSession) -> tuple[DataFrame, DataFrame]:
    recs = spark.createDataFrame(
        [(u, t, r, 1.0 / r) for u, ts in RECS.items() for r, t in enumerate(ts, start=1)],
        "user_id string, track_id string, rank int, score double",
    )
    relevant = spark.createDataFrame(
        [(u, t) for u, ts in RELEVANT.items() for t in ts], "user_id string, track_id string"
    )
    return recs, relevant


def _evaluator_input(spark: SparkSession, users: list[str]) -> DataFrame:
    """One row per user: predicted ids in rank order and relevant ids, as the double arrays Spark takes."""
    ids = {t: float(i) for i, t in enumerate(sorted({t for ts in [*RECS.values(), *RELEVANT.values()] for t in ts}))}
    rows = [([ids[t] for t in RECS.get(u, [])], [ids[t] for t in RELEVANT.get(u, [])]) for u in users]
    return spark.createDataFrame(rows, "prediction array<double>, label array<double>")


def _spark_metrics(frame: DataFrame, k: int) -> dict[str, float]:
    return {
        ours: RankingEvaluator(predictionCol="prediction", labelCol="label", metricName=name, k=k).evaluate(frame)
        for ours, name in SPARK_METRICS.items()
    }


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_ranking_metrics_equal_spark_ranking_evaluator_on_the_users_of_relevant(spark: SparkSession, k: int) -> None:
    recs, relevant = _ours(spark)
    ours = M.ranking_metrics(recs, relevant, k)
    theirs = _spark_metrics(_evaluator_input(spark, sorted(RELEVANT)), k)
    assert {m: ours[m] for m in SPARK_METRICS} == pytest.approx(theirs, abs=1e-12)


def test_hand_values_at_3_where_the_usual_definitions_differ(spark: SparkSession) -> None:
    recs, relevant = _ours(spark)
    got = M.ranking_metrics(recs, relevant, 3)
    lg3 = 1 / 1.584962500721156  # 1 / log2(3)
    # u1: AP (1 + 2/3) / 2; u2: AP (1 + 1) / min(3, 4) (2/4 if divided by |R|); u4: 1/2 / 1; u3, u5: 0.
    assert got[M.MAP] == pytest.approx((5 / 6 + 2 / 3 + 1 / 2) / 5)
    # NDCG ideal over min(k, |R|) ranks: u2 (1 + lg3) / (1 + lg3 + 1/2); u4 lg3 / 1.
    assert got[M.NDCG] == pytest.approx(((1 + 0.5) / (1 + lg3) + (1 + lg3) / (1.5 + lg3) + lg3) / 5)
    # Precision over k even when the list is shorter (u4: 1/3, not 1/2).
    assert got[M.PRECISION] == pytest.approx((2 / 3 + 2 / 3 + 0 + 1 / 3 + 0) / 5)


def test_the_one_difference_is_which_users_are_averaged(spark: SparkSession) -> None:
    """RankingEvaluator averages over its rows: a user without relevant items (u6) scores 0 and counts.

    ``ranking_metrics`` ignores users without relevant items (they cannot be scored), so with u6 given to
    Spark its figures are exactly ours times 5 / 6 (five users of ``relevant``, six rows).
    """
    recs, relevant = _ours(spark)
    ours = M.ranking_metrics(recs, relevant, 3)
    theirs = _spark_metrics(_evaluator_input(spark, [*sorted(RELEVANT), "u6"]), 3)
    assert theirs == pytest.approx({m: ours[m] * 5 / 6 for m in SPARK_METRICS}, abs=1e-12)
