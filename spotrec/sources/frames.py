"""Canonical values and output frames of the readers: track ids, UTC timestamps, schema projections.

The projections give exactly the reader, tracks, playlists and play-count schemas of :mod:`spotrec.tables`.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.tables import PLAY_COUNTS, PLAYLISTS, RAW_EVENT_SCHEMA, READER_SCHEMA, TRACKS

CANONICAL_FIELDS: tuple[str, ...] = tuple(f.name for f in RAW_EVENT_SCHEMA.fields)
"""The canonical event fields every reader fills (as strings) after the bookkeeping columns."""


# -- ids and timestamps -----------------------------------------------------------------------------


def name_track_id(artist: Column, track: Column) -> Column:
    """A deterministic track id from names: ``name:`` + sha1 hex of lower(artist) US lower(track).

    For formats without track ids (Spotify's basic export, Last.fm rows without an MBID). Null when
    either name is missing. The same names give the same id in every source, so plays of one song
    from two exports meet.
    """
    ok = artist.isNotNull() & track.isNotNull()
    key = F.concat_ws("\x1f", F.lower(artist), F.lower(track))
    return F.when(ok, F.concat(F.lit("name:"), F.sha1(key.cast("binary"))))


def spotify_uri_id(uri: Column) -> Column:
    """The id of a Spotify URI: ``spotify:track:ID`` -> ``ID``; ``spotify:episode:ID`` -> ``episode:ID``.

    Track ids stay bare (they are what Spotify's API calls the track id); other kinds keep their kind
    as prefix so an episode can never be mistaken for a track; a local file keeps its whole URI.
    """
    kind = F.regexp_extract(uri, r"^spotify:([a-z]+):", 1)
    rest = F.regexp_extract(uri, r"^spotify:[a-z]+:(.*)$", 1)
    return (
        F.when(uri.isNull() | (F.trim(uri) == ""), F.lit(None).cast("string"))
        .when(kind == "track", rest)
        .when(kind == "local", uri)
        .when(kind != "", F.concat(kind, F.lit(":"), rest))
        .otherwise(uri)
    )


_DATE_TIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"


def utc_wall_clock(ts: Column) -> Column:
    """A TIMESTAMP (an instant) as TIMESTAMP_NTZ holding its UTC wall clock, whatever the session zone."""
    epoch = F.lit("1970-01-01 00:00:00").cast("timestamp_ntz")
    return F.timestamp_add("MICROSECOND", F.unix_micros(ts), epoch)


def format_utc(wall: Column) -> Column:
    """Format a UTC wall clock (TIMESTAMP_NTZ) as ISO-8601 ``...Z``, with microseconds only when nonzero."""
    return F.when(F.date_format(wall, "SSSSSS") == "000000", F.date_format(wall, "yyyy-MM-dd'T'HH:mm:ss'Z'")).otherwise(
        F.date_format(wall, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'")
    )


def iso_utc(ts: Column) -> Column:
    """Normalise a timestamp string to ISO-8601 UTC (``2020-01-01T13:05:00Z``) where its shape allows.

    Accepted shapes: ``yyyy-MM-dd[T ]HH:mm[:ss[.f]]`` without zone (taken as UTC: the formats that
    write it, such as Spotify's ``endTime``, are documented as UTC), the same with ``Z`` or a
    ``+hh:mm`` offset (converted to UTC), and a bare date ``yyyy-MM-dd`` (midnight UTC). Anything
    else, including shaped but impossible values, is returned unchanged for ingest to quarantine as
    unparseable.
    """
    local = ts.rlike(_DATE_TIME + "$")
    zoned = ts.rlike(_DATE_TIME + r"(Z|[+-]\d{2}(:?\d{2})?)$")
    date_only = ts.rlike(r"^\d{4}-\d{2}-\d{2}$")
    wall = (
        F.when(local | date_only, ts.try_cast("timestamp_ntz"))
        .when(zoned, utc_wall_clock(ts.try_cast("timestamp")))
        .otherwise(F.lit(None).cast("timestamp_ntz"))
    )
    return F.coalesce(format_utc(wall), ts)


# -- output frames ----------------------------------------------------------------------------------


def reader_frame(
    df: DataFrame,
    *,
    source: str,
    raw: Column,
    fields: Mapping[str, Column],
    ok: Column | None = None,
) -> DataFrame:
    """Project ``df`` (with ``source_file`` and ``record_no``) to exactly :data:`READER_SCHEMA`.

    Args:
        df: the parsed records.
        source: the reader's name, written to ``source``.
        raw: the record text kept for inspection.
        fields: canonical field name -> expression; fields not given are null.
        ok: where false the record is malformed and every canonical field is null (ingest's
            ``malformed_record``).
    """
    unknown = set(fields) - set(CANONICAL_FIELDS)
    if unknown:
        raise ValueError(f"not canonical event fields: {sorted(unknown)}")
    cols = [
        F.lit(source).alias(C.SOURCE),
        F.col(C.SOURCE_FILE).cast("string").alias(C.SOURCE_FILE),
        F.col(C.RECORD_NO).cast("long").alias(C.RECORD_NO),
        raw.cast("string").alias(C.RAW),
    ]
    for name in CANONICAL_FIELDS:
        expr = fields.get(name, F.lit(None)).cast("string")
        if ok is not None:
            expr = F.when(ok, expr)
        cols.append(expr.alias(name))
    return _with_schema(df.select(*cols), READER_SCHEMA)


_ZERO: dict[type[T.DataType], object] = {T.StringType: "", T.LongType: 0, T.IntegerType: 0}


def _with_schema(df: DataFrame, schema: T.StructType) -> DataFrame:
    """``df`` cast to ``schema``, with its nullability declared too.

    Spark marks most derived columns nullable; a non-nullable field is made so by ``coalesce`` with a
    constant, which never fires because callers filter such rows out first (no extra data pass).
    """
    cols = []
    for f in schema.fields:
        col = F.col(f.name).cast(f.dataType)
        if not f.nullable:
            col = F.coalesce(col, F.lit(_ZERO[type(f.dataType)]).cast(f.dataType))
        cols.append(col.alias(f.name))
    return df.select(*cols)


def empty_frame(spark: SparkSession, schema: T.StructType | str) -> DataFrame:
    """An empty DataFrame with ``schema``."""
    return spark.createDataFrame([], schema)


def empty_events(spark: SparkSession) -> DataFrame:
    """An empty reader output (:data:`READER_SCHEMA`)."""
    return empty_frame(spark, READER_SCHEMA)


def tracks_frame(df: DataFrame, *, source: str, fields: Mapping[str, Column]) -> DataFrame:
    """Project to :data:`TRACKS`' columns, one row per track id (rows without an id are dropped).

    Duplicate ids keep the smallest (track_name, artist_name, ...) tuple, so the choice is deterministic.
    """
    names = [f.name for f in TRACKS.schema.fields if f.name not in (C.TRACK_ID, C.SOURCE)]
    projected = df.select(
        fields[C.TRACK_ID].cast("string").alias(C.TRACK_ID),
        *[
            fields.get(n, F.lit(None)).cast(TRACKS.schema[n].dataType).alias(n)
            for n in names  # keep declared types
        ],
    ).where(F.col(C.TRACK_ID).isNotNull())
    best = projected.groupBy(C.TRACK_ID).agg(F.min(F.struct(*names)).alias("_m"))
    return _with_schema(
        best.select(C.TRACK_ID, *[F.col(f"_m.{n}").alias(n) for n in names], F.lit(source).alias(C.SOURCE)),
        TRACKS.schema,
    )


def playlists_frame(df: DataFrame, *, source: str, fields: Mapping[str, Column]) -> DataFrame:
    """Project to :data:`PLAYLISTS`' schema; rows without a playlist id or track id are dropped."""
    cols = [
        (F.lit(source) if f.name == C.SOURCE else fields.get(f.name, F.lit(None))).cast(f.dataType).alias(f.name)
        for f in PLAYLISTS.schema.fields
    ]
    return _with_schema(
        df.select(*cols).where(F.col(C.PLAYLIST_ID).isNotNull() & F.col(C.TRACK_ID).isNotNull()), PLAYLISTS.schema
    )


def play_counts_frame(df: DataFrame, *, source: str, fields: Mapping[str, Column]) -> DataFrame:
    """Project to :data:`PLAY_COUNTS`' schema; rows lacking a user, item or numeric count are dropped."""
    cols = [
        (F.lit(source) if f.name == C.SOURCE else fields[f.name]).cast(f.dataType).alias(f.name)
        for f in PLAY_COUNTS.schema.fields
    ]
    out = df.select(*cols).where(
        F.col(C.USER_ID).isNotNull() & F.col(C.TRACK_ID).isNotNull() & F.col(C.PLAY_COUNT).isNotNull()
    )
    return _with_schema(out, PLAY_COUNTS.schema)
