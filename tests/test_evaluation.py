"""Splits, ranking / beyond-accuracy metrics and the harness, against hand-computed values."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.errors import SchemaMismatchError
from spotrec.evaluation import metrics as M
from spotrec.evaluation.harness import EvalResult, evaluate, format_table, results_frame
from spotrec.evaluation.recommender import InteractionRecommender, Recommender
from spotrec.evaluation.split import chosen_plays, holdout_split, relevant_items, time_split, time_split_cutoff
from spotrec.storage import Storage
from spotrec.tables import MODEL_METRICS

LOG2_3 = math.log2(3)


def _events(spark: SparkSession, rows: list[tuple[str, str, str, str]]) -> DataFrame:
    # Timestamps parsed by Spark in the (UTC) session timezone, not by Python in the local one.
    df = spark.createDataFrame(rows, "event_id string, user_id string, track_id string, ts_text string")
    return df.select(C.EVENT_ID, C.USER_ID, C.TRACK_ID, F.to_timestamp("ts_text").alias(C.TS))


def _pairs(spark: SparkSession, rows: list[tuple[str, str]]) -> DataFrame:
    return spark.createDataFrame(rows, "user_id string, track_id string")


def _recs(spark: SparkSession, rows: list[tuple[str, str, int]]) -> DataFrame:
    # score = 1 / rank: only rank matters to the metrics.
    return spark.createDataFrame(
        [(u, t, r, 1.0 / r) for u, t, r in rows], "user_id string, track_id string, rank int, score double"
    )


# --- splits ----------------------------------------------------------------------------------------


def test_time_split_holds_out_the_last_whole_days(spark: SparkSession) -> None:
    events = _events(
        spark,
        [
            ("e1", "u1", "t1", "2026-01-01 10:00:00"),
            ("e2", "u1", "t2", "2026-01-06 23:59:59"),
            ("e3", "u2", "t3", "2026-01-07 00:00:00"),
            ("e4", "u2", "t1", "2026-01-08 12:00:00"),
        ],
    )
    # max ts 2026-01-08 12:00 -> day 01-08, + 1 day = 01-09, - 2 test days = cut-off 2026-01-07 00:00 (test).
    assert time_split_cutoff(events, test_days=2) == dt.datetime(2026, 1, 7, tzinfo=dt.UTC)
    train, test = time_split(events, test_days=2)
    assert_df_equality(train, events.where(F.col(C.EVENT_ID).isin("e1", "e2")), ignore_row_order=True)
    assert_df_equality(test, events.where(F.col(C.EVENT_ID).isin("e3", "e4")), ignore_row_order=True)
    train1, test1 = time_split(events, test_days=1)  # cut-off 2026-01-08 00:00
    assert sorted(r[C.EVENT_ID] for r in test1.collect()) == ["e4"]
    assert train1.count() == 3


def test_time_split_rejects_empty_events_and_bad_days(spark: SparkSession) -> None:
    empty = _events(spark, [])
    with pytest.raises(ValueError, match="empty"):
        time_split(empty, test_days=7)
    with pytest.raises(ValueError, match="test_days"):
        time_split(_events(spark, [("e1", "u1", "t1", "2026-01-01 00:00:00")]), test_days=0)
    with pytest.raises(SchemaMismatchError, match="'ts'"):
        time_split(_pairs(spark, [("u1", "t1")]))


def test_holdout_split_per_user_counts_keep_one_train_item_and_are_deterministic(spark: SparkSession) -> None:
    rows = [("u1", f"t{i}") for i in range(5)] + [("u2", "t0"), ("u2", "t1"), ("u3", "t0")]
    rows += [("u4", "t0"), ("u4", "t1"), ("u4", "t2")]
    interactions = _pairs(spark, rows)
    train, test = holdout_split(interactions, fraction=0.4, seed=7)
    # n_test = min(round_half_up(n * 0.4), n - 1): u1 5 -> 2; u2 2 -> round(0.8) = 1;
    # u3 1 -> 0 (keeps its only item); u4 3 -> round(1.2) = 1.
    test_counts = {r[C.USER_ID]: r["count"] for r in test.groupBy(C.USER_ID).count().collect()}
    assert test_counts == {"u1": 2, "u2": 1, "u4": 1}
    assert_df_equality(train.unionByName(test), interactions, ignore_row_order=True)
    assert train.join(test, [C.USER_ID, C.TRACK_ID]).count() == 0
    train_again, test_again = holdout_split(interactions, fraction=0.4, seed=7)
    assert_df_equality(test_again, test, ignore_row_order=True)
    assert_df_equality(train_again, train, ignore_row_order=True)


def test_holdout_split_caps_at_all_but_one_item(spark: SparkSession) -> None:
    interactions = _pairs(spark, [("u1", "t1"), ("u1", "t2"), ("u1", "t3")])
    # fraction 0.9: round(2.7) = 3, capped at n - 1 = 2 held out, 1 kept.
    train, test = holdout_split(interactions, fraction=0.9, seed=1)
    assert (train.count(), test.count()) == (1, 2)
    with pytest.raises(ValueError, match="fraction"):
        holdout_split(interactions, fraction=1.0, seed=1)


def test_relevant_items_keeps_unheard_test_tracks_of_training_users(spark: SparkSession) -> None:
    train = _pairs(spark, [("u1", "t1"), ("u1", "t2"), ("u2", "t1")])
    test = _pairs(
        spark,
        [
            ("u1", "t2"),  # heard in train: not a discovery
            ("u1", "t3"),  # new: relevant
            ("u1", "t3"),  # duplicate play: counted once
            ("u2", "t3"),  # new: relevant
            ("u3", "t1"),  # user unknown to train: dropped
        ],
    )
    expected = _pairs(spark, [("u1", "t3"), ("u2", "t3")])
    assert_df_equality(relevant_items(train, test), expected, ignore_row_order=True, ignore_nullable=True)


def test_chosen_plays_leave_out_the_exploration_log(spark: SparkSession) -> None:
    test = spark.createDataFrame(
        [("u1", "t1", "playlist"), ("u1", "t2", "exploration"), ("u2", "t3", None)],
        "user_id string, track_id string, context_type string",
    )
    expected = spark.createDataFrame(
        [("u1", "t1", "playlist"), ("u2", "t3", None)], "user_id string, track_id string, context_type string"
    )
    assert_df_equality(chosen_plays(test), expected, ignore_row_order=True, ignore_nullable=True)
    pairs = _pairs(spark, [("u1", "t2")])  # no context_type: every play counts
    assert chosen_plays(pairs) is pairs


# --- ranking metrics -------------------------------------------------------------------------------


def test_ranking_metrics_match_hand_computation(spark: SparkSession) -> None:
    relevant = _pairs(spark, [("u1", "a"), ("u1", "b"), ("u2", "c"), ("u2", "e"), ("u3", "d")])
    recs = _recs(
        spark,
        [
            ("u1", "a", 1),
            ("u1", "x", 2),
            ("u1", "b", 3),
            ("u1", "y", 4),
            ("u2", "y", 1),
            ("u2", "z", 2),
            ("u2", "c", 3),
            ("u2", "e", 4),  # relevant but beyond k = 3: does not count
            ("u4", "a", 1),  # u4 has no relevant items: ignored
        ],
    )
    got = M.ranking_metrics(recs, relevant, k=3)
    # k = 3; IDCG for 2 relevant = 1/log2(2) + 1/log2(3) = 1 + 1/log2(3) =: I2.
    # u1 (R = {a, b}, hits at 1, 3): P = 2/3, R = 2/2 = 1, AP = (1/1 + 2/3) / min(3, 2) = 5/6,
    #     DCG = 1/log2(2) + 1/log2(4) = 1.5, NDCG = 1.5 / I2, hit = 1
    # u2 (R = {c, e}, hit at 3): P = 1/3, R = 1/2, AP = (1/3) / 2 = 1/6, DCG = 1/log2(4) = 0.5,
    #     NDCG = 0.5 / I2
    # u3 (R = {d}, no recs): all 0
    # means over 3 users: P = (2/3 + 1/3) / 3 = 1/3, R = 1.5 / 3 = 1/2, MAP = (5/6 + 1/6) / 3 = 1/3,
    #     NDCG = (2 / I2) / 3, hit = 2/3
    i2 = 1 + 1 / LOG2_3
    expected = {
        M.PRECISION: 1 / 3,
        M.RECALL: 1 / 2,
        M.MAP: 1 / 3,
        M.NDCG: 2 / i2 / 3,
        M.HIT_RATE: 2 / 3,
    }
    assert got == pytest.approx(expected, abs=1e-12)


def test_ranking_metrics_perfect_list_when_more_relevant_than_k(spark: SparkSession) -> None:
    relevant = _pairs(spark, [("u1", "a"), ("u1", "b"), ("u1", "c"), ("u1", "d")])
    recs = _recs(spark, [("u1", "a", 1), ("u1", "b", 2)])
    # k = 2, |R| = 4: P = 2/2, R = 2/4, AP = (1/1 + 2/2) / min(2, 4) = 1, NDCG = ideal (2 hits) = 1, hit = 1.
    got = M.ranking_metrics(recs, relevant, k=2)
    assert got == pytest.approx({M.PRECISION: 1.0, M.RECALL: 0.5, M.MAP: 1.0, M.NDCG: 1.0, M.HIT_RATE: 1.0})


def test_ranking_metrics_validate_inputs(spark: SparkSession) -> None:
    relevant = _pairs(spark, [("u1", "a")])
    with pytest.raises(SchemaMismatchError, match="'rank'"):
        M.ranking_metrics(_pairs(spark, [("u1", "a")]), relevant, k=3)
    with pytest.raises(ValueError, match="relevant is empty"):
        M.ranking_metrics(_recs(spark, [("u1", "a", 1)]), _pairs(spark, []), k=3)
    with pytest.raises(ValueError, match="k must be"):
        M.ranking_metrics(_recs(spark, [("u1", "a", 1)]), relevant, k=0)


# --- hit rate and MRR: one definition, in Spark and on arrays ---------------------------------------


def test_next_track_metrics_in_spark_and_on_arrays_are_one_definition(spark: SparkSession) -> None:
    # Ranked ids per query (-1: empty slot) and the true next id (-1: out of vocabulary, never a hit).
    ranked = np.array([[5, 3, 9], [1, 2, 3], [7, 8, 4], [0, 6, 2], [4, -1, -1]])
    targets = np.array([3, 1, 2, -1, -1])  # first-hit ranks 2, 1, none, none (OOV), none (OOV, empty slots)
    recs = _recs(spark, [(f"q{i}", str(t), r + 1) for i, row in enumerate(ranked) for r, t in enumerate(row) if t >= 0])
    nxt = _pairs(spark, [(f"q{i}", str(t)) for i, t in enumerate(targets)])
    arrays = M.next_track_metrics_arrays(ranked, targets, ks=(1, 2, 3))
    assert arrays == pytest.approx({"hit@1": 1 / 5, "hit@2": 2 / 5, "hit@3": 2 / 5, "mrr": (1 + 1 / 2) / 5})
    in_spark = M.next_track_metrics(recs, nxt, [1, 2, 3])
    for k in (1, 2, 3):
        assert in_spark[k][M.NEXT_HIT_RATE] == pytest.approx(arrays[f"hit@{k}"])
    assert in_spark[3][M.NEXT_MRR] == pytest.approx(arrays["mrr"])
    # The generic form is the same numbers under the generic names, and its hit rate is ranking_metrics'.
    generic = M.hit_rate_and_mrr(recs, nxt, [2])[2]
    assert generic == pytest.approx({M.HIT_RATE: 2 / 5, M.MRR: (1 + 1 / 2) / 5})
    assert M.ranking_metrics(recs, nxt, 2)[M.HIT_RATE] == pytest.approx(generic[M.HIT_RATE])
    assert M.ranking_metrics_with_mrr(recs, nxt, 2)[M.MRR] == pytest.approx(generic[M.MRR])
    with pytest.raises(ValueError, match="relevant is empty"):
        M.hit_rate_and_mrr(recs, nxt.limit(0), [2])


# --- the harness with a model passed already fitted -----------------------------------------------


class _Fixed:
    """A Recommender without ``fit`` (like the RNN methods): fixed lists cut to ``n`` (none of them heard)."""

    name = "fixed"

    def __init__(self, recs: DataFrame) -> None:
        self.recs = recs

    def recommend(self, users: DataFrame, n: int, exclude: DataFrame | None = None) -> DataFrame:
        return self.recs.join(users, [C.USER_ID], "left_semi").where(F.col(C.RANK) <= n)


def test_harness_scores_a_prefitted_recommender_with_next_track_metrics(spark: SparkSession) -> None:
    model = _Fixed(_recs(spark, [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "d", 1), ("u2", "c", 2)]))
    assert isinstance(model, Recommender) and not isinstance(model, InteractionRecommender)
    train = _pairs(spark, [("u1", "x"), ("u2", "y"), ("u3", "a")])
    relevant = _pairs(spark, [("u1", "c"), ("u1", "b"), ("u2", "c")])
    nxt = _pairs(spark, [("u1", "c"), ("u2", "c")])
    (result,) = evaluate([model], train, relevant, k=2, n=3, next_tracks=nxt)
    assert result.model == "fixed" and result.users == 2 and result.fit_seconds < 1
    # Next track at k = 2: u1's c is at rank 3 (miss), u2's at rank 2: hit 1/2, MRR (0 + 1/2) / 2.
    # At n = 3: both hit: hit 1, MRR (1/3 + 1/2) / 2, under the names with "@3".
    got = {m: v for m, v in result.metrics.items() if m.startswith("next_track")}
    assert got == pytest.approx(
        {
            M.NEXT_HIT_RATE: 1 / 2,
            M.NEXT_MRR: 1 / 4,
            f"{M.NEXT_HIT_RATE}@3": 1.0,
            f"{M.NEXT_MRR}@3": (1 / 3 + 1 / 2) / 2,
        }
    )
    # Ranking metrics at k = 2 as usual: u1 hits b (of {b, c}) at 2, u2 hits c at 2.
    assert result.metrics[M.HIT_RATE] == 1.0 and result.metrics[M.RECALL] == pytest.approx((1 / 2 + 1) / 2)


# --- beyond accuracy -------------------------------------------------------------------------------


def _train(spark: SparkSession) -> DataFrame:
    # 3 users; a: u1 u2 u3 (3), b: u1 u3 (2), c: u2 (1), d: u3 (1); (u1, a) twice counts once.
    return _pairs(
        spark,
        [
            ("u1", "a"),
            ("u1", "a"),
            ("u1", "b"),
            ("u2", "a"),
            ("u2", "c"),
            ("u3", "a"),
            ("u3", "b"),
            ("u3", "d"),
        ],
    )


def test_item_popularity_shares_and_percentiles(spark: SparkSession) -> None:
    got = M.item_popularity(_train(spark))
    # share = listeners / 3 users; percent_rank over listeners: c, d (1) -> 0;
    # b (2) -> 2 less / (4 - 1) = 2/3; a (3) -> 3/3 = 1.
    expected = spark.createDataFrame(
        [("a", 3, 1.0, 1.0), ("b", 2, 2 / 3, 2 / 3), ("c", 1, 1 / 3, 0.0), ("d", 1, 1 / 3, 0.0)],
        "track_id string, n_users long, share double, popularity_percentile double",
    )
    assert_approx_df_equality(got, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_coverage_novelty_and_popularity_bias(spark: SparkSession) -> None:
    popularity = M.item_popularity(_train(spark))
    recs = _recs(spark, [("u1", "c", 1), ("u1", "b", 2), ("u2", "a", 1), ("u2", "z", 2), ("u2", "b", 3)])
    # top 2: c, b, a, z (z unknown to training). Coverage: {a, b, c, z} = 4 of 10 items.
    assert M.catalogue_coverage(recs, 10, k=2) == pytest.approx(0.4)
    # -log2 share: c log2(3), b log2(3/2) = log2(3) - 1, a 0, z as rare as the rarest (1/3): log2(3).
    # mean = (3 log2(3) - 1) / 4
    assert M.novelty(recs, popularity, k=2) == pytest.approx((3 * LOG2_3 - 1) / 4)
    # percentiles: c 0, b 2/3, a 1, z 0 (unknown) -> (5/3) / 4 = 5/12
    assert M.popularity_bias(recs, popularity, k=2) == pytest.approx(5 / 12)
    with pytest.raises(ValueError, match="n_items"):
        M.catalogue_coverage(recs, 0, k=2)


def test_artist_diversity(spark: SparkSession) -> None:
    tracks = spark.createDataFrame(
        [("a", "A1"), ("b", "A1"), ("c", "A2"), ("d", None)], "track_id string, artist_id string"
    )
    recs = _recs(
        spark,
        [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u1", "d", 4), ("u2", "d", 1), ("u2", "e", 2)],
    )
    # k = 3. u1: a, b, c -> artists {A1, A2} over 3 tracks = 2/3 (d at rank 4 cut).
    # u2: d (no artist), e (unknown track) -> each its own artist: 2/2 = 1.  Mean = (2/3 + 1) / 2 = 5/6.
    assert M.artist_diversity(recs, tracks, k=3) == pytest.approx(5 / 6)
    with pytest.raises(SchemaMismatchError, match="'artist_id'"):
        M.artist_diversity(recs, tracks.drop(C.ARTIST_ID), k=3)


# --- results to ops.model_metrics ------------------------------------------------------------------


def test_metrics_frame_lands_in_model_metrics(spark: SparkSession, storage: Storage) -> None:
    frame = M.metrics_frame(spark, "run1", "als", "v1", "synthetic", {M.NDCG: 0.25, M.NOVELTY: float("nan")}, 10)
    assert frame.schema == MODEL_METRICS.schema
    storage.append(MODEL_METRICS, frame)
    got = storage.read(MODEL_METRICS).drop("created_at")
    expected = spark.createDataFrame(
        [
            ("run1", "als", "v1", "synthetic", "ndcg", 10, 0.25),
            ("run1", "als", "v1", "synthetic", "novelty", 10, None),
        ],
        "run_id string, model string, model_version string, dataset string, metric string, k int, value double",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    created = storage.read(MODEL_METRICS).agg(F.min("created_at")).first()
    assert created is not None and created[0] is not None


def test_results_frame_has_one_row_per_model_and_metric(spark: SparkSession) -> None:
    results = [
        EvalResult("popularity", 10, 30, {M.NDCG: 0.1, M.MAP: 0.05}),
        EvalResult("als", 10, 30, {M.NDCG: 0.3, M.MAP: 0.2}),
    ]
    got = results_frame(spark, results, run_id="r", dataset="d").select(C.MODEL, C.METRIC, C.K, C.VALUE)
    expected = spark.createDataFrame(
        [
            ("popularity", "ndcg", 10, 0.1),
            ("popularity", "map", 10, 0.05),
            ("als", "ndcg", 10, 0.3),
            ("als", "map", 10, 0.2),
        ],
        "model string, metric string, k int, value double",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_format_table() -> None:
    popularity = {M.NDCG: 0.1, M.MAP: 0.05, M.PRECISION: 0.02, M.RECALL: 0.1, M.HIT_RATE: 0.2}
    popularity |= {M.COVERAGE: 0.01, M.NOVELTY: 2.5}
    als = {M.NDCG: 0.3, M.MAP: 0.2, M.PRECISION: 0.06, M.RECALL: 0.3, M.HIT_RATE: 0.5}
    als |= {M.COVERAGE: 0.4, M.NOVELTY: 7.25, M.ARTIST_DIVERSITY: 0.9}
    table = format_table([EvalResult("popularity", 10, 30, popularity), EvalResult("als", 10, 30, als)])
    # Fixed-width Markdown: model left-aligned, numbers right-aligned to 4 decimals, missing metric "-".
    assert table.splitlines() == [
        "| model      | ndcg@10 | map@10 | precision@10 | recall@10 | hit@10 | coverage | novelty | artist diversity |",
        "|------------|--------:|-------:|-------------:|----------:|-------:|---------:|--------:|-----------------:|",
        "| popularity |  0.1000 | 0.0500 |       0.0200 |    0.1000 | 0.2000 |   0.0100 |  2.5000 |                - |",
        "| als        |  0.3000 | 0.2000 |       0.0600 |    0.3000 | 0.5000 |   0.4000 |  7.2500 |           0.9000 |",
    ]
