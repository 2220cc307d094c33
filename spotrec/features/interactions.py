"""Silver events -> the weighted play-count matrix (``gold.interactions``) that implicit ALS factorises.

Each event contributes to its (user, track) cell's confidence:

* a stream adds ``stream_weight * fraction played`` (0 below ``min_play_fraction``), so a full play
  counts more than a sampled intro; formats without a play length (Last.fm scrobbles, MSSD) count a
  non-skipped play as a full one;
* a skip subtracts ``skip_penalty`` (skips count against the track);
* an explicit save / like adds ``save_boost`` (explicit signals outweigh implicit ones);
* streams and skips decay with age: an event ``half_life_days`` older than ``as_of`` counts half.
  Saves do not decay: a save is a standing statement of taste, not a momentary one.

The confidence may end up negative for tracks a user mostly skips. MLlib's implicit ALS reads a negative
rating as preference 0 with confidence ``1 + alpha * |r|``, i.e. a confident "not for me", which is
what a run of skips means.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import MatrixConfig
from spotrec.errors import SchemaMismatchError
from spotrec.features.ordinal import global_row_number

REQUIRED_EVENT_COLUMNS = (C.USER_ID, C.TRACK_ID, C.TS, C.MS_PLAYED, C.TRACK_DURATION_MS, C.SKIPPED, C.SAVED)


def _require(df: DataFrame, cols: tuple[str, ...], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SchemaMismatchError(f"{what} needs column(s) {missing}; got {df.columns}")


def latest_ts(events: DataFrame) -> dt.datetime:
    """The reference time for decay when none is configured: the newest event."""
    row = events.agg(F.max(C.TS)).first()
    if row is None or row[0] is None:
        raise ValueError("no events: cannot build interactions from an empty silver.listen_events")
    return row[0]


def event_weights(events: DataFrame, weights: MatrixConfig, as_of: dt.datetime) -> DataFrame:
    """Per event: is_skip, is_save, play fraction and the event's contribution to confidence."""
    _require(events, REQUIRED_EVENT_COLUMNS, "build_interactions")
    duration = F.coalesce(F.col(C.TRACK_DURATION_MS).cast("double"), F.lit(float(weights.default_duration_ms)))
    is_skip = F.coalesce(F.col(C.SKIPPED), F.col(C.MS_PLAYED) < weights.skip_threshold_ms, F.lit(False))
    # Formats without play length (Last.fm scrobbles, MSSD) count a non-skipped play as a full one.
    # (least() ignores nulls, so the missing length must be handled before it.)
    fraction = F.when(F.col(C.MS_PLAYED).isNull(), F.when(is_skip, 0.0).otherwise(1.0)).otherwise(
        F.least(F.col(C.MS_PLAYED).cast("double") / duration, F.lit(1.0))
    )
    is_save = F.coalesce(F.col(C.SAVED), F.lit(False))
    stream = F.when(fraction >= weights.min_play_fraction, weights.stream_weight * fraction).otherwise(0.0)
    age_days = (F.lit(as_of).cast("timestamp").cast("double") - F.col(C.TS).cast("double")) / 86400.0
    decay: Column
    if weights.half_life_days > 0:
        decay = F.pow(F.lit(0.5), F.greatest(age_days, F.lit(0.0)) / weights.half_life_days)
    else:
        decay = F.lit(1.0)
    contribution = decay * (stream - F.when(is_skip, weights.skip_penalty).otherwise(0.0)) + F.when(
        is_save, weights.save_boost
    ).otherwise(0.0)
    return events.select(
        C.USER_ID,
        C.TRACK_ID,
        C.TS,
        C.MS_PLAYED,
        is_skip.alias("_skip"),
        is_save.alias("_save"),
        contribution.alias("_contribution"),
    )


def build_interactions(events: DataFrame, *, weights: MatrixConfig, as_of: dt.datetime | None = None) -> DataFrame:
    """One row per (user, track): confidence, plays, skips, saves, ms_played, last_played.

    Args:
        events: rows shaped like ``silver.listen_events``.
        weights: the weighting rules (see module docstring).
        as_of: reference time for decay; default ``weights.as_of`` or else the newest event.
    """
    if as_of is None:
        as_of = dt.datetime.fromisoformat(weights.as_of) if weights.as_of else latest_ts(events)
    weighted = event_weights(events, weights, as_of)
    return weighted.groupBy(C.USER_ID, C.TRACK_ID).agg(
        F.sum("_contribution").alias(C.CONFIDENCE),
        F.count(F.lit(1)).alias(C.PLAYS),
        F.sum(F.col("_skip").cast("long")).alias(C.SKIPS),
        F.sum(F.col("_save").cast("long")).alias(C.SAVES),
        F.coalesce(F.sum(C.MS_PLAYED), F.lit(0)).alias(C.MS_PLAYED),
        F.max(C.TS).alias(C.LAST_PLAYED),
    )


def interactions_from_counts(counts: DataFrame, *, transform: str = "log1p") -> DataFrame:
    """Pre-aggregated play counts (HetRec) -> interactions; ``log1p`` tames heavy listeners' counts."""
    _require(counts, (C.USER_ID, C.TRACK_ID, C.PLAY_COUNT), "interactions_from_counts")
    if transform == "log1p":
        confidence = F.log1p(F.col(C.PLAY_COUNT).cast("double"))
    elif transform == "raw":
        confidence = F.col(C.PLAY_COUNT).cast("double")
    else:
        raise ValueError(f"matrix.count_transform must be 'log1p' or 'raw', not {transform!r}")
    return (
        counts.groupBy(C.USER_ID, C.TRACK_ID)
        .agg(F.sum(C.PLAY_COUNT).alias(C.PLAY_COUNT))
        .select(
            C.USER_ID,
            C.TRACK_ID,
            confidence.alias(C.CONFIDENCE),
            F.col(C.PLAY_COUNT).cast("long").alias(C.PLAYS),
            F.lit(0).cast("long").alias(C.SKIPS),
            F.lit(0).cast("long").alias(C.SAVES),
            F.lit(0).cast("long").alias(C.MS_PLAYED),
            F.lit(None).cast("timestamp").alias(C.LAST_PLAYED),
        )
    )


def extend_index(existing: DataFrame | None, ids: DataFrame, id_col: str, idx_col: str) -> DataFrame:
    """Existing (id, idx) rows plus new ids numbered after the current maximum, in id order.

    Ids never change number between runs, so factors and recommendations stay comparable across model
    versions, and the numbering does not depend on partitioning or input order. The new ids are numbered
    by a range-partitioned sort with per-partition offsets (:func:`global_row_number`), never in a single
    partition: the numbers equal ``row_number() over (order by id)`` exactly.
    """
    distinct = ids.select(id_col).where(F.col(id_col).isNotNull()).distinct()
    if existing is None:
        start = 0
        new = distinct
    else:
        row = existing.agg(F.max(idx_col)).first()
        start = int(row[0]) + 1 if row is not None and row[0] is not None else 0
        new = distinct.join(existing.select(id_col), id_col, "left_anti")
    numbered = global_row_number(new, [id_col], "_idx", start=start).select(
        id_col, F.col("_idx").cast("int").alias(idx_col)
    )
    if existing is None:
        return numbered
    return existing.select(id_col, idx_col).unionByName(numbered)


def with_indexes(interactions: DataFrame, user_index: DataFrame, track_index: DataFrame) -> DataFrame:
    """Attach user_idx / track_idx (inner join: every id must be indexed first)."""
    return interactions.join(user_index, C.USER_ID).join(track_index, C.TRACK_ID)
