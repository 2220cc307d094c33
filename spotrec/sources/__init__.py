"""Readers: real-world listening-data formats -> spotrec's reader schemas.

Event readers return exactly :data:`spotrec.tables.READER_SCHEMA`: ``source``, ``source_file`` (the
file's URI), ``record_no`` (1-based line number, or element index in a JSON array), ``raw`` (the
record's text, for inspection in quarantine) and the canonical event fields *as strings*. Readers map
formats and do not validate values: ingest casts, quarantines (a row whose canonical fields are all
null is a ``malformed_record``) and computes missing event ids. ``ts`` is ISO-8601 UTC where the
format allows, else the original text (ingest: ``unparseable_ts``).

A file in the wrong format raises :class:`~spotrec.errors.ReaderFormatError` naming the reader, the
file and the line; an empty file or folder gives an empty frame and a warning. Everything runs as
Spark jobs; only one small row per file block reaches the driver (see :mod:`spotrec.sources.text`).

Usage::

    events = read_events(spark, "lastfm_1k", "raw/lastfm/*.tsv")
    lists = read_playlists(spark, "spotify_playlist", "raw/export/Playlist1.json", user_id="me")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from spotrec.errors import ReaderFormatError
from spotrec.sources.frames import iso_utc, name_track_id, spotify_uri_id
from spotrec.sources.generic import (
    GENERIC_CSV,
    GENERIC_JSONL,
    GENERIC_PARQUET,
    GENERIC_PLAY_COUNTS,
    GENERIC_PLAYLISTS,
    read_generic_csv,
    read_generic_jsonl,
    read_generic_parquet,
    read_generic_play_counts,
    read_generic_playlists,
)
from spotrec.sources.lastfm import HETREC, LASTFM_1K, read_hetrec, read_lastfm_1k
from spotrec.sources.mssd import MSSD, MSSD_TRACK_FEATURES, read_mssd_log, read_mssd_track_features
from spotrec.sources.spotify import (
    EXTENDED,
    MPD,
    PLAYLIST,
    STREAMING_HISTORY,
    PlaylistRead,
    read_extended_history,
    read_mpd_playlists,
    read_spotify_playlists,
    read_streaming_history,
)
from spotrec.sources.yes import YES, read_yes_playlists

EVENT_READERS: dict[str, Callable[..., DataFrame]] = {
    STREAMING_HISTORY: read_streaming_history,
    EXTENDED: read_extended_history,
    LASTFM_1K: read_lastfm_1k,
    MSSD: read_mssd_log,
    GENERIC_CSV: read_generic_csv,
    GENERIC_PARQUET: read_generic_parquet,
    GENERIC_JSONL: read_generic_jsonl,
}
"""Event readers by format name; each is ``(spark, path, **options) -> DataFrame`` in READER_SCHEMA."""

PLAYLIST_READERS: dict[str, Callable[..., PlaylistRead]] = {
    PLAYLIST: read_spotify_playlists,
    MPD: read_mpd_playlists,
    YES: read_yes_playlists,
    GENERIC_PLAYLISTS: read_generic_playlists,
}
"""Playlist readers by format name: ``(spark, path, **options) -> PlaylistRead`` (playlists, tracks)."""

PLAY_COUNT_READERS: dict[str, Callable[..., DataFrame]] = {
    HETREC: read_hetrec,
    GENERIC_PLAY_COUNTS: read_generic_play_counts,
}
"""Pre-aggregated count readers: ``(spark, path, **options) -> DataFrame`` in PLAY_COUNTS' schema."""

TRACK_FEATURE_READERS: dict[str, Callable[..., DataFrame]] = {MSSD_TRACK_FEATURES: read_mssd_track_features}
"""Track catalogue readers: ``(spark, path, **options) -> DataFrame`` in TRACKS' schema."""


def _lookup(registry: dict[str, Callable[..., Any]], kind: str, fmt: str, path: str) -> Callable[..., Any]:
    try:
        return registry[fmt]
    except KeyError:
        raise ReaderFormatError(
            fmt, path, None, f"no {kind} reader is called {fmt!r}; known formats: {', '.join(sorted(registry))}"
        ) from None


def read_events(spark: SparkSession, fmt: str, path: str, **options: Any) -> DataFrame:
    """Read listening events of format ``fmt`` from a file, folder or glob into READER_SCHEMA.

    Args:
        spark: the session.
        fmt: a key of :data:`EVENT_READERS`.
        path: a file, a folder or a glob.
        **options: the reader's keyword options (e.g. ``user_id``, ``mapping``, ``source``).

    Raises:
        ReaderFormatError: unknown ``fmt`` (the message lists the known ones) or a file in the wrong format.
    """
    return _lookup(EVENT_READERS, "event", fmt, path)(spark, path, **options)  # type: ignore[no-any-return]


def read_playlists(spark: SparkSession, fmt: str, path: str, **options: Any) -> PlaylistRead:
    """Read playlists of format ``fmt`` (``spotify_playlist``, ``spotify_mpd``, ``yes``, ``generic_playlists``).

    Returns PLAYLISTS + TRACKS rows.
    """
    return _lookup(PLAYLIST_READERS, "playlist", fmt, path)(spark, path, **options)  # type: ignore[no-any-return]


def read_play_counts(spark: SparkSession, fmt: str, path: str, **options: Any) -> DataFrame:
    """Read pre-aggregated play counts of format ``fmt`` (``hetrec``, ``generic_play_counts``): PLAY_COUNTS rows."""
    return _lookup(PLAY_COUNT_READERS, "play-count", fmt, path)(spark, path, **options)  # type: ignore[no-any-return]


def read_track_features(spark: SparkSession, fmt: str, path: str, **options: Any) -> DataFrame:
    """Read a track catalogue of format ``fmt`` (``mssd_track_features``) in TRACKS' schema."""
    return _lookup(TRACK_FEATURE_READERS, "track-feature", fmt, path)(spark, path, **options)  # type: ignore[no-any-return]


__all__ = [
    "EVENT_READERS",
    "PLAYLIST_READERS",
    "PLAY_COUNT_READERS",
    "TRACK_FEATURE_READERS",
    "PlaylistRead",
    "iso_utc",
    "name_track_id",
    "read_events",
    "read_play_counts",
    "read_playlists",
    "read_track_features",
    "spotify_uri_id",
]
