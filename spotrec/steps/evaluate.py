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
from spotrec.evaluation.split import chosen_plays, holdout_split, relevant_items, time_split
from spotrec.features.interactions import build_interactions, with_indexes
from spotrec.steps.base import StepContext, StepResult
from spotrec.storage import Storage
from spotrec.tables import INTERACTIONS, MODEL_METRICS, SILVER_EVENTS, TRACK_INDEX, TRACKS, USER_INDEX
from spotrec.weekly.als import make_recommender, release

DATASET = "last-week"


def time_split_interactions(storage: Storage, cfg: Config, test_days: int = 7):  # type: ignore[no-untyped-def]
    """(train interactions with indexes, relevant unheard test items) from silver events."""
    train_events, test_events = time_split(storage.read(SILVER_EVENTS), test_days=test_days)
    train = with_indexes(
        build_interactions(train_events, weights=cfg.matrix), storage.read(USER_INDEX), storage.read(TRACK_INDEX)
    ).cache()
    relevant = relevant_items(train, chosen_plays(test_events).select(C.USER_ID, C.TRACK_ID)).cache()
    return train, relevant


HOLDOUT_FRACTION = 0.2
"""Share of each user's items held out when the data has no timestamps (play counts only)."""


def holdout_interactions(storage: Storage, cfg: Config):  # type: ignore[no-untyped-def]
    """(train interactions, relevant test items) from a per-user holdout of gold.interactions."""
    train, test = holdout_split(storage.read(INTERACTIONS), fraction=HOLDOUT_FRACTION, seed=cfg.seed)
    train = train.cache()
    relevant = relevant_items(train, test.select(C.USER_ID, C.TRACK_ID)).cache()
    return train, relevant


def evaluate_weekly(
    spark: SparkSession, storage: Storage, cfg: Config, run_id: str, say: Callable[[str], None] = print
) -> list[EvalResult]:
    """Fit ALS and the baselines on the training weeks; score the last week; print and store the table.

    Without listening events (play counts only) the split is a per-user holdout of gold.interactions.
    """
    from spotrec.steps.needs import data_size, safe_als_config

    timed = storage.exists(SILVER_EVENTS)
    if timed:
        train, relevant = time_split_interactions(storage, cfg)
        dataset, split = DATASET, "train = all but the last 7 days, test = unheard tracks played in them"
    else:
        say(
            f"[evaluate] play counts have no timestamps, using a {HOLDOUT_FRACTION:.0%} per-user holdout "
            "of gold.interactions"
        )
        train, relevant = holdout_interactions(storage, cfg)
        dataset, split = "holdout", f"train = {1 - HOLDOUT_FRACTION:.0%} of each user's items, test = the rest"
    k = cfg.weekly.eval_k
    weekly = safe_als_config(cfg.weekly, *data_size(train), say, "evaluate")
    recommenders: list[Recommender] = [
        PopularityRecommender(),
        CooccurrenceRecommender(),
        make_recommender(weekly, cfg.storage.checkpoint_dir, block_size=cfg.weekly.user_block_size),
    ]
    tracks = storage.read(TRACKS) if storage.exists(TRACKS) else None
    results = evaluate(recommenders, train, relevant, k=k, n=k, tracks=tracks)
    for recommender in recommenders:  # the step's own models
        release(recommender)
    storage.append(MODEL_METRICS, results_frame(spark, results, run_id=run_id, dataset=dataset))
    say(f"[evaluate] Discover Weekly, {split}, k={k}")
    say(format_table(results))
    train.unpersist()
    relevant.unpersist()
    return results


def run(ctx: StepContext) -> StepResult:
    from spotrec.steps.needs import listeners, skip, too_few_listeners

    if not ctx.storage.exists(INTERACTIONS):
        return skip(ctx, "evaluate", "no gold.interactions: run `spotrec matrix` first")
    why = too_few_listeners(listeners(ctx.storage, INTERACTIONS))
    if why:
        return skip(ctx, "evaluate", why)
    from spotrec.steps.needs import singular

    try:
        with ctx.tracked("evaluate", inputs=[SILVER_EVENTS, TRACKS], outputs=[MODEL_METRICS]) as run_id:
            evaluate_weekly(ctx.spark, ctx.storage, ctx.cfg, run_id, say=ctx.say)
    except Exception as exc:
        if not singular(exc):
            raise
        return skip(ctx, "evaluate", "ALS cannot factor this little data (a singular system); lower weekly.rank")
    return ctx.result("evaluate", run_id)
