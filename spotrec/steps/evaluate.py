"""``spotrec evaluate``: Discover Weekly against its baselines, train on all but the last week, test on that week.

ALS is always reported beside the two baselines (most-popular unheard, item co-occurrence) on the same
split, and every figure lands in ``ops.model_metrics`` under the run id.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import SparkSession

from spotrec import columns as C
from spotrec.config import Config
from spotrec.evaluation.baselines import CooccurrenceRecommender, PopularityRecommender
from spotrec.evaluation.harness import EvalResult, evaluate, format_table, results_frame
from spotrec.evaluation.recommender import Recommender
from spotrec.evaluation.split import relevant_items, time_split
from spotrec.features.interactions import build_interactions, with_indexes
from spotrec.steps.base import StepContext, StepResult
from spotrec.storage import Storage
from spotrec.tables import MODEL_METRICS, SILVER_EVENTS, TRACK_INDEX, TRACKS, USER_INDEX
from spotrec.weekly.als import AlsRecommender

DATASET = "last-week"


def time_split_interactions(storage: Storage, cfg: Config, test_days: int = 7):  # type: ignore[no-untyped-def]
    """(train interactions with indexes, relevant unheard test items) from silver events."""
    train_events, test_events = time_split(storage.read(SILVER_EVENTS), test_days=test_days)
    train = with_indexes(
        build_interactions(train_events, weights=cfg.matrix), storage.read(USER_INDEX), storage.read(TRACK_INDEX)
    ).cache()
    relevant = relevant_items(train, test_events.select(C.USER_ID, C.TRACK_ID)).cache()
    return train, relevant


def evaluate_weekly(
    spark: SparkSession, storage: Storage, cfg: Config, run_id: str, say: Callable[[str], None] = print
) -> list[EvalResult]:
    """Fit ALS and the baselines on the training weeks; score the last week; print and store the table."""
    train, relevant = time_split_interactions(storage, cfg)
    k = cfg.weekly.eval_k
    recommenders: list[Recommender] = [
        PopularityRecommender(),
        CooccurrenceRecommender(),
        AlsRecommender(cfg.weekly, cfg.storage.checkpoint_dir, block_size=cfg.weekly.user_block_size),
    ]
    results = evaluate(recommenders, train, relevant, k=k, n=k, tracks=storage.read(TRACKS))
    storage.append(MODEL_METRICS, results_frame(spark, results, run_id=run_id, dataset=DATASET))
    say(f"[evaluate] Discover Weekly, train = all but the last 7 days, test = unheard tracks played in them, k={k}")
    say(format_table(results))
    train.unpersist()
    relevant.unpersist()
    return results


def run(ctx: StepContext) -> StepResult:
    with ctx.tracked("evaluate", inputs=[SILVER_EVENTS, TRACKS], outputs=[MODEL_METRICS]) as run_id:
        evaluate_weekly(ctx.spark, ctx.storage, ctx.cfg, run_id, say=ctx.say)
    return ctx.result("evaluate", run_id)
