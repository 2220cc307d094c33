"""``spotrec matrix``: silver events (+ pre-aggregated counts) -> stable indexes -> gold.interactions."""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame, SparkSession

from spotrec import columns as C
from spotrec.config import Config
from spotrec.features.interactions import (
    build_interactions,
    extend_index,
    interactions_from_counts,
    with_indexes,
)
from spotrec.steps.base import StepContext, StepResult
from spotrec.steps.tables import table_rows
from spotrec.storage import Storage
from spotrec.tables import INTERACTIONS, PLAY_COUNTS, SILVER_EVENTS, TRACK_INDEX, USER_INDEX


def collect_interactions(storage: Storage, cfg: Config) -> DataFrame:
    """Interactions from silver events and, when present, silver.play_counts (unioned)."""
    parts: list[DataFrame] = []
    if storage.exists(SILVER_EVENTS):
        parts.append(build_interactions(storage.read(SILVER_EVENTS), weights=cfg.matrix))
    if storage.exists(PLAY_COUNTS):
        parts.append(interactions_from_counts(storage.read(PLAY_COUNTS), transform=cfg.matrix.count_transform))
    if not parts:
        storage.read(SILVER_EVENTS)  # raises the "run `spotrec ingest` first" error
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def run_matrix(spark: SparkSession, storage: Storage, cfg: Config, say: Callable[[str], None] = print) -> int:
    """Rebuild gold.interactions (one atomic overwrite) and extend the id indexes; returns the row count."""
    interactions = collect_interactions(storage, cfg).persist()
    users = extend_index(
        storage.read(USER_INDEX) if storage.exists(USER_INDEX) else None, interactions, C.USER_ID, C.USER_IDX
    )
    tracks = extend_index(
        storage.read(TRACK_INDEX) if storage.exists(TRACK_INDEX) else None,
        interactions,
        C.TRACK_ID,
        C.TRACK_IDX,
    )
    storage.merge_new(USER_INDEX, users)
    storage.merge_new(TRACK_INDEX, tracks)
    indexed = with_indexes(interactions, storage.read(USER_INDEX), storage.read(TRACK_INDEX))
    storage.overwrite(INTERACTIONS, indexed.repartition(spark.sparkContext.defaultParallelism, C.USER_IDX))
    interactions.unpersist()
    n = table_rows(storage, INTERACTIONS)
    say(f"[matrix] gold.interactions: {n:,} (user, track) rows")
    return n


def run(ctx: StepContext) -> StepResult:
    from spotrec.steps.needs import skip

    if not (ctx.storage.exists(SILVER_EVENTS) or ctx.storage.exists(PLAY_COUNTS)):
        return skip(ctx, "matrix", "no listening events and no play counts: run `spotrec ingest` with a source first")
    with ctx.tracked(
        "matrix", inputs=[SILVER_EVENTS, PLAY_COUNTS], outputs=[INTERACTIONS, USER_INDEX, TRACK_INDEX]
    ) as run_id:
        run_matrix(ctx.spark, ctx.storage, ctx.cfg, say=ctx.say)
    return ctx.result("matrix", run_id)
