"""Discover Weekly playlists and similar tracks from ALS factors (pure DataFrame transforms).

A Discover Weekly list is the user's top unheard tracks with at most ``max_per_artist`` tracks per artist,
so one prolific artist cannot fill the playlist. The candidate list comes from
:func:`spotrec.weekly.topn.top_n_unheard` with more than ``n`` tracks (see :func:`candidate_count`); the
artist cap is applied in rank order and the survivors are re-ranked 1..n.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.weekly.topn import top_n_similar

CANDIDATE_FACTOR = 4
"""Candidates fetched per playlist slot before the artist cap (30 slots -> 120 candidates)."""


def candidate_count(n: int, factor: int = CANDIDATE_FACTOR) -> int:
    """How many unheard tracks to score per user so that ``n`` survive the artist cap in most cases."""
    return n * factor


def parse_week(week: str | datetime.date) -> datetime.date:
    """A week as a date (its Monday by convention); raises ValueError on anything but an ISO date."""
    if isinstance(week, datetime.date):
        return week
    return datetime.date.fromisoformat(week)


def discover_weekly(
    candidates: DataFrame,
    tracks: DataFrame,
    *,
    week: str | datetime.date,
    model_version: str,
    n: int = 30,
    max_per_artist: int = 2,
) -> DataFrame:
    """One week's playlists: at most ``max_per_artist`` per artist, in candidate rank order, ranks 1..n.

    Args:
        candidates: user_id, track_id, rank (1 = best), score; already free of heard tracks.
        tracks: silver.tracks (track_id, artist_id). A track with no known artist counts as its own artist.
        week: the playlist's week (ISO date).
        model_version: the ALS model version that scored the candidates.
        n: playlist length.
        max_per_artist: the artist cap.

    Returns:
        gold.discover_weekly columns: week, user_id, rank, track_id, artist_id, score, model_version.
    """
    if n <= 0 or max_per_artist <= 0:
        raise ValueError(f"n and max_per_artist must be positive, got n={n}, max_per_artist={max_per_artist}")
    week_date = parse_week(week)
    artists = tracks.select(C.TRACK_ID, C.ARTIST_ID).dropDuplicates([C.TRACK_ID])
    artist_key = F.coalesce(F.col(C.ARTIST_ID), F.concat(F.lit("track:"), F.col(C.TRACK_ID)))
    by_artist = Window.partitionBy(C.USER_ID, "_artist").orderBy(C.RANK, C.TRACK_ID)
    by_user = Window.partitionBy(C.USER_ID).orderBy(C.RANK, C.TRACK_ID)
    return (
        candidates.select(C.USER_ID, C.TRACK_ID, C.RANK, C.SCORE)
        .join(artists, C.TRACK_ID, "left")
        .withColumn("_artist", artist_key)
        .withColumn("_artist_pos", F.row_number().over(by_artist))
        .where(F.col("_artist_pos") <= max_per_artist)
        .withColumn("_new_rank", F.row_number().over(by_user))
        .where(F.col("_new_rank") <= n)
        .select(
            F.lit(week_date).alias(C.WEEK),
            C.USER_ID,
            F.col("_new_rank").cast("int").alias(C.RANK),
            C.TRACK_ID,
            C.ARTIST_ID,
            F.col(C.SCORE).cast("double").alias(C.SCORE),
            F.lit(model_version).alias(C.MODEL_VERSION),
        )
    )


MAX_FILL_ROUNDS = 8
"""Refetch rounds at most (candidates grow by CANDIDATE_FACTOR per round: 30 slots -> 120 -> ... 7.9M)."""


def fill_discover_weekly(
    fetch: Callable[[DataFrame, int], DataFrame],
    users: DataFrame,
    tracks: DataFrame,
    *,
    week: str | datetime.date,
    model_version: str,
    n: int = 30,
    max_per_artist: int = 2,
    cache: list[DataFrame] | None = None,
) -> DataFrame:
    """Discover Weekly lists of ``n`` for every user with enough unheard tracks across enough artists.

    Args:
        fetch: ``(users, k) -> candidates``: each user's top ``k`` unheard tracks (user_id, track_id,
            rank, score), e.g. ``AlsRecommender.recommend`` with the heard pairs excluded.
        users: the users (``user_id``) to make lists for.
        tracks: silver.tracks (track_id, artist_id).
        week: the playlists' week.
        model_version: the model that scored the candidates.
        n: playlist length.
        max_per_artist: the artist cap.
        cache: where the persisted intermediate frames are appended, for the caller to unpersist after
            writing the result (each round's candidates are scored once).

    Returns:
        gold.discover_weekly rows. A user short of ``n`` after the cap whose candidate list was full
        (``k`` rows: more unheard tracks exist) is fetched again with ``k * CANDIDATE_FACTOR``; only
        such users are re-scored, and only the count of them reaches the driver each round.
    """
    k = candidate_count(n)
    pending = users.select(C.USER_ID).distinct()
    parts: list[DataFrame] = []
    for round_no in range(MAX_FILL_ROUNDS + 1):
        candidates = fetch(pending, k).persist(StorageLevel.MEMORY_AND_DISK)
        lists = discover_weekly(
            candidates, tracks, week=week, model_version=model_version, n=n, max_per_artist=max_per_artist
        ).persist(StorageLevel.MEMORY_AND_DISK)
        if cache is not None:
            cache.extend([candidates, lists])
        got = lists.groupBy(C.USER_ID).agg(F.count(F.lit(1)).alias("_got"))
        fetched = candidates.groupBy(C.USER_ID).agg(F.count(F.lit(1)).alias("_fetched"))
        short = (
            fetched.join(got, C.USER_ID, "left")
            .where((F.coalesce(F.col("_got"), F.lit(0)) < n) & (F.col("_fetched") >= k))
            .select(C.USER_ID)
        )
        if round_no == MAX_FILL_ROUNDS or short.isEmpty():
            parts.append(lists)
            break
        parts.append(lists.join(short, C.USER_ID, "left_anti"))
        pending = short
        k *= CANDIDATE_FACTOR
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def similar_tracks(track_factors: DataFrame, n: int, *, block_size: int = 1024) -> DataFrame:
    """Each track's ``n`` nearest other tracks by cosine similarity of ALS factors.

    Args:
        track_factors: gold.track_factors (track_idx, track_id, features, model_version).
        n: neighbours per track.
        block_size: tracks per matmul.

    Returns:
        gold.similar_tracks columns: track_id, rank, similar_track_id, score, model_version.
    """
    ids = track_factors.select(C.TRACK_IDX, C.TRACK_ID, C.MODEL_VERSION)
    other = ids.select(F.col(C.TRACK_IDX).alias("similar_track_idx"), F.col(C.TRACK_ID).alias(C.SIMILAR_TRACK_ID))
    return (
        top_n_similar(track_factors.select(C.TRACK_IDX, C.FEATURES), n, block_size)
        .join(ids, C.TRACK_IDX)
        .join(other, "similar_track_idx")
        .select(C.TRACK_ID, C.RANK, C.SIMILAR_TRACK_ID, C.SCORE, C.MODEL_VERSION)
    )
