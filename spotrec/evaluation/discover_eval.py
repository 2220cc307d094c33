"""The evaluate step for Discover Weekly: train on all but the last week, test on that week.

ALS is always reported beside the two baselines (most-popular unheard, item co-occurrence) on the same
split, and every figure lands in ``ops.model_metrics`` under the run id.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from spotrec import columns as C
from spotrec.config import Config
from spotrec.discover.als import AlsRecommender, best_trial, trials_frame, tune
from spotrec.discover.baselines import CooccurrenceRecommender, PopularityRecommender
from spotrec.evaluation.harness import EvalResult, evaluate, format_table, results_frame
from spotrec.evaluation.split import relevant_items, time_split
from spotrec.features.interactions import build_interactions, with_indexes
from spotrec.recommender import Recommender
from spotrec.tables import MODEL_METRICS, SILVER_EVENTS, TRACK_INDEX, TRACKS, USER_INDEX, Storage

DATASET = "last-week"


def time_split_interactions(storage: Storage, cfg: Config, test_days: int = 7):  # type: ignore[no-untyped-def]
    """(train interactions with indexes, relevant unheard test items) from silver events."""
    train_events, test_events = time_split(storage.read(SILVER_EVENTS), test_days=test_days)
    train = with_indexes(
        build_interactions(train_events, weights=cfg.matrix), storage.read(USER_INDEX), storage.read(TRACK_INDEX)
    ).cache()
    relevant = relevant_items(train, test_events.select(C.USER_ID, C.TRACK_ID)).cache()
    return train, relevant


def run_discover_evaluation(spark: SparkSession, storage: Storage, cfg: Config, run_id: str) -> list[EvalResult]:
    """Fit ALS and the baselines on the training weeks; score the last week; print and store the table."""
    train, relevant = time_split_interactions(storage, cfg)
    k = cfg.discover.eval_k
    recommenders: list[Recommender] = [
        PopularityRecommender(),
        CooccurrenceRecommender(),
        AlsRecommender(cfg.als, cfg.storage.checkpoint_dir, block_size=cfg.discover.user_block_size),
    ]
    results = evaluate(recommenders, train, relevant, k=k, n=k, tracks=storage.read(TRACKS))
    storage.append(MODEL_METRICS, results_frame(spark, results, run_id=run_id, dataset=DATASET))
    print(f"[evaluate] Discover Weekly, train = all but the last 7 days, test = unheard tracks played in them, k={k}")
    print(format_table(results))
    train.unpersist()
    relevant.unpersist()
    return results


def run_als_tuning(spark: SparkSession, storage: Storage, cfg: Config, run_id: str) -> dict[str, float]:
    """Grid-search rank / regParam / alpha on the validation week; every trial lands in ops.model_metrics."""
    train, relevant = time_split_interactions(storage, cfg)
    trials = tune(
        train,
        relevant,
        None,
        cfg.discover.eval_k,
        cfg=cfg.als,
        checkpoint_dir=cfg.storage.checkpoint_dir,
    )
    storage.append(MODEL_METRICS, trials_frame(spark, trials, run_id=run_id, dataset=f"{DATASET}-tuning"))
    best = best_trial(trials, "ndcg")
    for t in trials:
        mark = " <- best" if t is best else ""
        print(
            f"[tune] rank={t.rank:<4} reg={t.reg_param:<6} alpha={t.alpha:<6} ndcg@{t.k}="
            f"{t.metrics.get('ndcg', float('nan')):.4f} fit={t.fit_seconds:.1f}s{mark}"
        )
    train.unpersist()
    relevant.unpersist()
    return {"rank": best.rank, "reg_param": best.reg_param, "alpha": best.alpha}
