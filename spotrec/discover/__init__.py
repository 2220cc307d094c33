"""Discover Weekly: implicit ALS, blocked top-N, weekly playlists, similar tracks and taste clusters.

:func:`run_discover` is the step's table I/O: it reads gold.interactions and silver.tracks, fits ALS and
writes the six gold tables. Everything it calls is a pure DataFrame transform in ``als``, ``topn``,
``weekly`` and ``taste``.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import Config
from spotrec.discover.als import AlsRecommender
from spotrec.discover.taste import CLUSTER, cluster_purity_vs_truth, purity_chance, taste_clusters, user_taste_profile
from spotrec.discover.weekly import candidate_count, discover_weekly, parse_week, similar_tracks
from spotrec.evaluation.metrics import metrics_frame
from spotrec.tables import (
    DISCOVER_WEEKLY,
    INTERACTIONS,
    MODEL_METRICS,
    SIMILAR_TRACKS,
    TASTE_CLUSTERS,
    TRACK_FACTORS,
    TRACKS,
    USER_FACTORS,
    USER_TASTE_PROFILE,
    Storage,
)


def week_condition(week: str | datetime.date) -> str:
    """The replaceWhere predicate selecting one week's partition (the date is validated first)."""
    return f"{C.WEEK} = '{parse_week(week).isoformat()}'"


def save_discover_weekly(storage: Storage, playlists: DataFrame, week: str | datetime.date) -> None:
    """Write one week's playlists, atomically replacing that week only (reruns are idempotent).

    Raises:
        ValueError: ``playlists`` holds rows of another week (replaceWhere would reject the commit).
    """
    storage.replace_where(DISCOVER_WEEKLY, playlists, week_condition(week))


def run_discover(
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
        cfg: ``als`` and ``discover`` sections are used; ``storage.checkpoint_dir`` cuts ALS lineage.
        run_id: recorded by the caller in ops.runs; returned in the summary.
        week: ISO date of the playlist week; only that week of gold.discover_weekly is replaced.

    Returns:
        run_id, week, model_version, input_version and the row count of every table written.
    """
    week_date = parse_week(week)
    interactions = storage.read(INTERACTIONS)
    tracks = storage.read(TRACKS)
    input_version = storage.version(INTERACTIONS)
    als = AlsRecommender(
        cfg.als,
        cfg.storage.checkpoint_dir,
        block_size=cfg.discover.user_block_size,
        input_version=f"{INTERACTIONS.full_name}@v{input_version}",
    ).fit(interactions)
    version = als.model_version

    storage.overwrite(USER_FACTORS, als.user_factors())
    storage.overwrite(TRACK_FACTORS, als.track_factors())
    # Downstream reads the written factors, so nothing below re-derives them from the model's lineage.
    track_factors = storage.read(TRACK_FACTORS)

    users = interactions.select(C.USER_ID).distinct()
    candidates = als.recommend(
        users, candidate_count(cfg.discover.playlist_size), exclude=interactions.select(C.USER_IDX, C.TRACK_IDX)
    )
    playlists = discover_weekly(
        candidates,
        tracks,
        week=week_date,
        model_version=version,
        n=cfg.discover.playlist_size,
        max_per_artist=cfg.discover.max_per_artist,
    )
    save_discover_weekly(storage, playlists, week_date)

    storage.overwrite(
        SIMILAR_TRACKS,
        similar_tracks(track_factors, cfg.discover.similar_tracks, block_size=cfg.discover.user_block_size),
    )
    storage.overwrite(TASTE_CLUSTERS, taste_clusters(track_factors, cfg.discover.taste_clusters, seed=cfg.seed))
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


__all__ = ["AlsRecommender", "run_discover", "save_discover_weekly", "week_condition"]
