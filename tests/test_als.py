"""MLlib implicit ALS: planted checkerboard recovery, reproducibility, factor tables and tuning."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec.config import WeeklyConfig
from spotrec.tables import TRACK_FACTORS, USER_FACTORS, conform
from spotrec.weekly.als import AlsRecommender, Trial, best_trial, model_version, trials_frame, tune

CFG = WeeklyConfig(
    rank=4, reg_param=0.1, alpha=10.0, max_iter=10, num_blocks=2, checkpoint_interval=5, seed=7, solver="mllib"
)
BLOCK = 6  # users and items per checkerboard block


def checkerboard(spark: SparkSession) -> tuple[DataFrame, DataFrame]:
    """Two blocks: users 0-5 play items 0-5, users 6-11 play items 6-11; user u's item u is held out.

    Like benfred/implicit's get_checker_board: the held-out item is the only unheard item of the user's own
    block, so a model that learnt the blocks must rank it first among everything the user has not heard.
    """
    train, held_out = [], []
    for u in range(2 * BLOCK):
        block = range((u // BLOCK) * BLOCK, (u // BLOCK + 1) * BLOCK)
        for i in block:
            row = (f"u{u:02d}", f"t{i:02d}", u, i, 1.0)
            (held_out if i == u else train).append(row)
    schema = "user_id string, track_id string, user_idx int, track_idx int, confidence double"
    return spark.createDataFrame(train, schema), spark.createDataFrame(held_out, schema)


@pytest.fixture(scope="module")
def board(spark: SparkSession) -> Iterator[tuple[DataFrame, DataFrame, AlsRecommender]]:
    train, held_out = checkerboard(spark)
    yield train, held_out, AlsRecommender(CFG).fit(train)


def test_held_out_item_comes_back_first(board: tuple[DataFrame, DataFrame, AlsRecommender]) -> None:
    train, held_out, als = board
    recs = als.recommend(train.select("user_id").distinct(), 1, exclude=train)
    got = recs.select("user_id", "track_id", "rank")
    expected = held_out.select("user_id", "track_id", F.lit(1).alias("rank"))
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_recommend_never_returns_excluded_and_ranks_in_score_order(
    board: tuple[DataFrame, DataFrame, AlsRecommender],
) -> None:
    train, _, als = board
    recs = als.recommend(train.select("user_id").distinct(), 20, exclude=train).collect()
    heard = {(r.user_id, r.track_id) for r in train.collect()}
    assert not {(r.user_id, r.track_id) for r in recs} & heard
    # 12 items - 5 heard = 7 unheard items per user; ranks 1..7 with non-increasing scores.
    by_user: dict[str, list] = {}
    for r in sorted(recs, key=lambda r: (r.user_id, r.rank)):
        by_user.setdefault(r.user_id, []).append(r)
    assert sorted(by_user) == [f"u{u:02d}" for u in range(12)]
    for rows in by_user.values():
        assert [r.rank for r in rows] == list(range(1, 8))
        assert all(a.score >= b.score for a, b in itertools.pairwise(rows))


def test_unknown_users_get_nothing(spark: SparkSession, board: tuple[DataFrame, DataFrame, AlsRecommender]) -> None:
    _, _, als = board
    users = spark.createDataFrame([("nobody",), ("u00",)], "user_id string")
    assert {r.user_id for r in als.recommend(users, 3).collect()} == {"u00"}


def test_factor_frames_follow_the_table_schemas(board: tuple[DataFrame, DataFrame, AlsRecommender]) -> None:
    _, _, als = board
    users = conform(als.user_factors(), USER_FACTORS).collect()
    tracks = conform(als.track_factors(), TRACK_FACTORS).collect()
    assert sorted((r.user_idx, r.user_id) for r in users) == [(u, f"u{u:02d}") for u in range(12)]
    assert sorted((r.track_idx, r.track_id) for r in tracks) == [(i, f"t{i:02d}") for i in range(12)]
    assert {len(r.features) for r in users + tracks} == {CFG.rank}
    assert {r.model_version for r in users + tracks} == {als.model_version}
    assert re.fullmatch(r"als-r4-l0\.1-a10-[0-9a-f]{8}", als.model_version)


def test_model_version_changes_with_params_and_input() -> None:
    assert model_version(CFG, "v1") == model_version(CFG.model_copy(), "v1")
    assert model_version(CFG, "v1") != model_version(CFG, "v2")
    assert model_version(CFG, "v1") != model_version(CFG.model_copy(update={"seed": 8}), "v1")


def test_same_seed_same_factors(spark: SparkSession, board: tuple[DataFrame, DataFrame, AlsRecommender]) -> None:
    train, _, first = board
    # Shuffle the input order: the deterministic layout must make the fit independent of it.
    again = AlsRecommender(CFG).fit(train.orderBy(F.rand(1)).repartition(3))

    def factors(als: AlsRecommender) -> np.ndarray:
        rows = sorted(als.user_factors().collect(), key=lambda r: r.user_idx)
        return np.array([r.features for r in rows])

    np.testing.assert_array_equal(factors(first), factors(again))


def test_tune_scores_every_grid_point(spark: SparkSession) -> None:
    train, held_out = checkerboard(spark)
    grid = [{"rank": 2, "reg_param": 0.01, "alpha": 10.0}, {"rank": 4, "reg_param": 0.05, "alpha": 5.0}]
    # Default metrics: spotrec.evaluation.metrics.ranking_metrics. One relevant item per user, found at rank 1.
    trials = tune(train, held_out.select("user_id", "track_id"), grid, 1, cfg=CFG)
    assert [(t.rank, t.reg_param, t.alpha) for t in trials] == [(2, 0.01, 10.0), (4, 0.05, 5.0)]
    perfect = {"precision": 1.0, "recall": 1.0, "map": 1.0, "ndcg": 1.0, "hit_rate": 1.0}
    assert [t.metrics for t in trials] == [perfect, perfect]
    assert {t.k for t in trials} == {1}
    assert trials[0].model_version.startswith("als-r2-l0.01-a10-")
    assert best_trial(trials, "hit_rate") is trials[0]  # tie: the earliest wins


def test_trials_frame_rows(spark: SparkSession) -> None:
    trials = [Trial(2, 0.01, 10.0, "als-r2-x", 1.5, 5, {"ndcg@10": 0.25, "map": 0.5})]
    got = trials_frame(spark, trials, run_id="r1", dataset="val").drop("created_at")
    expected = spark.createDataFrame(
        [
            ("r1", "als", "als-r2-x", "val", "fit_seconds", None, 1.5),
            ("r1", "als", "als-r2-x", "val", "ndcg", 10, 0.25),
            ("r1", "als", "als-r2-x", "val", "map", 5, 0.5),
        ],
        "run_id string, model string, model_version string, dataset string, metric string, k int, value double",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
