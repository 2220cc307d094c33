"""``spotrec weekly``: Discover Weekly from implicit ALS.

Reads gold.interactions and silver.tracks, fits ALS (:mod:`spotrec.weekly.als`), and writes the factors, this
week's playlists (that week's partition only), similar tracks, taste clusters and taste profiles. With
``--tune`` it first grid-searches rank / regParam / alpha on the last-week split. On a generated world it
also reports how well the taste clusters recover the world's true taste groups.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import Config
from spotrec.evaluation.metrics import metrics_frame
from spotrec.steps.base import StepContext, StepResult
from spotrec.steps.evaluate import DATASET, time_split_interactions
from spotrec.storage import Storage
from spotrec.tables import (
    DISCOVER_WEEKLY,
    INTERACTIONS,
    MODEL_METRICS,
    SILVER_EVENTS,
    SIMILAR_TRACKS,
    TASTE_CLUSTERS,
    TRACK_FACTORS,
    TRACKS,
    USER_FACTORS,
    USER_TASTE_PROFILE,
)
from spotrec.weekly.als import best_trial, make_recommender, trials_frame, tune
from spotrec.weekly.discover_weekly import fill_discover_weekly, parse_week, similar_tracks
from spotrec.weekly.taste import CLUSTER, cluster_purity_vs_truth, purity_chance, taste_clusters, user_taste_profile

OUTPUTS = [
    USER_FACTORS,
    TRACK_FACTORS,
    DISCOVER_WEEKLY,
    SIMILAR_TRACKS,
    TASTE_CLUSTERS,
    USER_TASTE_PROFILE,
    MODEL_METRICS,
]


def playlist_week(storage: Storage) -> str:
    """The Monday after the newest interaction: the week the playlist is for."""
    row = storage.read(INTERACTIONS).agg(F.max(C.LAST_PLAYED)).first()
    latest = row[0].date() if row and row[0] else datetime.date.today()
    return (latest + datetime.timedelta(days=7 - latest.weekday())).isoformat()


def week_condition(week: str | datetime.date) -> str:
    """The replaceWhere predicate selecting one week's partition (the date is validated first)."""
    return f"{C.WEEK} = '{parse_week(week).isoformat()}'"


def save_discover_weekly(storage: Storage, playlists: DataFrame, week: str | datetime.date) -> None:
    """Write one week's playlists, atomically replacing that week only (reruns are idempotent).

    Raises:
        ValueError: ``playlists`` holds rows of another week (replaceWhere would reject the commit).
    """
    storage.replace_where(DISCOVER_WEEKLY, playlists, week_condition(week))


def run_weekly(
    spark: SparkSession,
    storage: Storage,
    cfg: Config,
    run_id: str,
    week: str | datetime.date,
) -> dict[str, Any]:
    """Fit ALS on gold.interactions and write factors, this week's playlists, similar tracks and tastes.

    Args:
        spark: the session (reads go through ``storage``, which holds the same session).
        storage: where the tables live.
        cfg: the ``weekly`` section is used; ``storage.checkpoint_dir`` cuts ALS lineage.
        run_id: recorded by the caller in ops.runs; returned in the summary.
        week: ISO date of the playlist week; only that week of gold.discover_weekly is replaced.

    Returns:
        run_id, week, model_version, input_version and the row count of every table written.
    """
    week_date = parse_week(week)
    interactions = storage.read(INTERACTIONS)
    tracks = storage.read(TRACKS) if storage.exists(TRACKS) else spark.createDataFrame([], TRACKS.schema)
    input_version = storage.version(INTERACTIONS)
    from spotrec.steps.needs import data_size, safe_als_config

    als = make_recommender(
        safe_als_config(cfg.weekly, *data_size(interactions), logging.getLogger(__name__).info, "weekly"),
        cfg.storage.checkpoint_dir,
        block_size=cfg.weekly.user_block_size,
        input_version=f"{INTERACTIONS.full_name}@v{input_version}",
    ).fit(interactions)
    version = als.model_version

    storage.overwrite(USER_FACTORS, als.user_factors())
    storage.overwrite(TRACK_FACTORS, als.track_factors())
    # Downstream reads the written factors, so nothing below re-derives them from the model's lineage.
    track_factors = storage.read(TRACK_FACTORS)

    users = interactions.select(C.USER_ID).distinct()
    heard = interactions.select(C.USER_IDX, C.TRACK_IDX)
    cached: list[DataFrame] = []
    playlists = fill_discover_weekly(
        lambda who, k: als.recommend(who, k, exclude=heard),
        users,
        tracks,
        week=week_date,
        model_version=version,
        n=cfg.weekly.playlist_size,
        max_per_artist=cfg.weekly.max_per_artist,
        cache=cached,
    )
    save_discover_weekly(storage, playlists, week_date)
    for df in cached:
        df.unpersist()

    storage.overwrite(
        SIMILAR_TRACKS,
        similar_tracks(track_factors, cfg.weekly.similar_tracks, block_size=cfg.weekly.user_block_size),
    )
    storage.overwrite(TASTE_CLUSTERS, taste_clusters(track_factors, cfg.weekly.taste_clusters, seed=cfg.seed))
    clusters = storage.read(TASTE_CLUSTERS)
    storage.overwrite(USER_TASTE_PROFILE, user_taste_profile(interactions, clusters))

    counts = {
        USER_FACTORS.full_name: storage.read(USER_FACTORS).count(),
        TRACK_FACTORS.full_name: track_factors.count(),
        DISCOVER_WEEKLY.full_name: storage.read(DISCOVER_WEEKLY).where(F.col(C.WEEK) == F.lit(week_date)).count(),
        SIMILAR_TRACKS.full_name: storage.read(SIMILAR_TRACKS).count(),
        TASTE_CLUSTERS.full_name: clusters.count(),
        USER_TASTE_PROFILE.full_name: storage.read(USER_TASTE_PROFILE).count(),
    }
    return {
        "run_id": run_id,
        "week": week_date.isoformat(),
        "model_version": version,
        "input_version": input_version,
        "rows": counts,
        "taste_recovery": taste_recovery(spark, storage, cfg, run_id, version, clusters),
    }


def taste_recovery(
    spark: SparkSession, storage: Storage, cfg: Config, run_id: str, model_version: str, clusters: DataFrame
) -> dict[str, float] | None:
    """Compare the taste clusters with the synthetic world's true taste groups, when that truth exists.

    The measures are the adjusted Rand index (0 = chance, 1 = the groups exactly) and purity (share of
    tracks in their cluster's majority group; chance = the largest group's share, returned as
    ``purity_chance``). They land in ``ops.model_metrics`` (dataset ``ground-truth``). Real data has no
    ground truth: then nothing is computed and None is returned.
    """
    truth_path = Path(cfg.storage.artifacts_dir) / "ground_truth" / "tracks"
    if not truth_path.exists():  # the ground truth lives on a local or mounted path (see spotrec.synth.truth)
        return None
    truth = pd.read_parquet(truth_path, columns=[C.TRACK_ID, "taste_group"])
    found: pd.DataFrame = clusters.select(C.TRACK_ID, CLUSTER).toPandas()
    measures = cluster_purity_vs_truth(found, truth)
    measures["purity_chance"] = purity_chance(found, truth)
    metrics = {f"taste_{name}": measures[name] for name in ("ari", "purity", "purity_chance")}
    storage.append(
        MODEL_METRICS, metrics_frame(spark, run_id, "als_taste_clusters", model_version, "ground-truth", metrics, None)
    )
    return measures


def run_als_tuning(
    spark: SparkSession, storage: Storage, cfg: Config, run_id: str, say: Callable[[str], None] = print
) -> dict[str, float]:
    """Grid-search rank / regParam / alpha on the validation week; every trial lands in ops.model_metrics."""
    train, relevant = time_split_interactions(storage, cfg)
    trials = tune(
        train,
        relevant,
        None,
        cfg.weekly.eval_k,
        cfg=cfg.weekly,
        checkpoint_dir=cfg.storage.checkpoint_dir,
    )
    storage.append(MODEL_METRICS, trials_frame(spark, trials, run_id=run_id, dataset=f"{DATASET}-tuning"))
    best = best_trial(trials, "ndcg")
    for t in trials:
        mark = " <- best" if t is best else ""
        say(
            f"[tune] rank={t.rank:<4} reg={t.reg_param:<6} alpha={t.alpha:<6} ndcg@{t.k}="
            f"{t.metrics.get('ndcg', float('nan')):.4f} fit={t.fit_seconds:.1f}s{mark}"
        )
    train.unpersist()
    relevant.unpersist()
    return {"rank": best.rank, "reg_param": best.reg_param, "alpha": best.alpha}


def log_als(ctx: StepContext, model_version: str) -> None:
    """The ALS factors as an MLflow pyfunc model ((user_id, track_id) -> score), when they fit on the driver."""
    from spotrec.tracking import log_als_model

    users, tracks = ctx.storage.read(USER_FACTORS), ctx.storage.read(TRACK_FACTORS)
    n = users.count() + tracks.count()
    if n == 0 or n > ctx.cfg.tracking.max_factor_rows:
        ctx.say(f"[weekly] ALS model not logged to MLflow: {n:,} factor rows (tracking.max_factor_rows)")
        return
    u = users.select(C.USER_ID, C.FEATURES).collect()
    t = tracks.select(C.TRACK_ID, C.FEATURES).collect()
    assert ctx.tracker is not None
    log_als_model(
        ctx.tracker,
        np.array([r[0] for r in u]),
        np.array([r[1] for r in u], dtype=np.float32),
        np.array([r[0] for r in t]),
        np.array([r[1] for r in t], dtype=np.float32),
        Path(ctx.cfg.storage.artifacts_dir) / "weekly" / model_version,
    )


def run(ctx: StepContext) -> StepResult:
    from spotrec.steps.needs import listeners, skip, too_few_listeners

    cfg = ctx.cfg
    if not ctx.storage.exists(INTERACTIONS):
        return skip(ctx, "weekly", "no gold.interactions: run `spotrec matrix` first")
    why = too_few_listeners(listeners(ctx.storage, INTERACTIONS))
    if why:
        return skip(ctx, "weekly", why)
    with ctx.tracked("weekly", inputs=[INTERACTIONS, TRACKS, SILVER_EVENTS], outputs=OUTPUTS) as run_id:
        if ctx.option("tune", False):
            best = run_als_tuning(ctx.spark, ctx.storage, cfg, run_id, say=ctx.say)
            # The tuned settings apply to this run only; the caller's config is left as loaded.
            cfg = cfg.model_copy(
                update={"weekly": cfg.weekly.model_copy(update={k: best[k] for k in ("rank", "reg_param", "alpha")})}
            )
            ctx.say(f"[weekly] training the final model with {best}")
        week = ctx.option("week") or playlist_week(ctx.storage)
        try:
            summary = run_weekly(ctx.spark, ctx.storage, cfg, run_id, week)
        except Exception as exc:
            from spotrec.steps.needs import singular

            if not singular(exc):
                raise
            return skip(ctx, "weekly", "ALS cannot factor this little data (a singular system); lower weekly.rank")
        ctx.say(f"[weekly] model {summary['model_version']}, Discover Weekly for week {summary['week']}")
        if ctx.tracker is not None:
            log_als(ctx, str(summary["model_version"]))
        for table, rows in summary["rows"].items():
            ctx.say(f"[weekly]   {table}: {rows:,} rows")
        truth = summary["taste_recovery"]
        if truth is not None:
            ctx.say(
                f"[weekly] taste clusters vs the world's true taste groups ({truth['tracks']:,.0f} tracks, "
                f"{truth['clusters']:.0f} clusters, {truth['groups']:.0f} groups): adjusted Rand index "
                f"{truth['ari']:.3f} (chance 0), purity {truth['purity']:.3f} (chance {truth['purity_chance']:.3f})"
            )
    return ctx.result("weekly", run_id)
