"""Raw reader rows -> typed canonical events, or a quarantine row with the first rule they broke.

Every rule is a ``Column -> Column`` expression so the whole validation is one projection (no per-rule
passes), and the order of :data:`RULES` decides which reason a row that breaks several rules gets.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.tables import QUARANTINE, RAW_EVENT_SCHEMA, SILVER_EVENTS

TIMESTAMP_FORMATS = (
    "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS][.SSS]XXX",
    "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS][.SSS]",
    "yyyy-MM-dd HH:mm:ss[.SSSSSS][.SSS]XXX",
    "yyyy-MM-dd HH:mm:ss[.SSSSSS][.SSS]",
    "yyyy-MM-dd HH:mm",
    "yyyy-MM-dd",
)
"""Accepted timestamp spellings (ISO-8601 with or without zone, Spotify's basic export, dates)."""

TRUE_STRINGS = ("true", "1", "t", "yes", "y")
FALSE_STRINGS = ("false", "0", "f", "no", "n")

# Reasons, in the order they are checked.
MALFORMED = "malformed_record"
MISSING_USER = "missing_user_id"
MISSING_TRACK = "missing_track_id"
UNPARSEABLE_TS = "unparseable_ts"
FUTURE_TS = "future_ts"
INVALID_MS = "invalid_ms_played"
NEGATIVE_MS = "negative_ms_played"
ABSURD_MS = "absurd_ms_played"


def _blank(col: str) -> Column:
    return F.col(col).isNull() | (F.trim(F.col(col)) == "")


def parse_ts(col: Column, source_timezone: str = "UTC") -> Column:
    """Parse any accepted spelling to a UTC timestamp; null when none matches."""
    parsed = F.coalesce(*[F.try_to_timestamp(F.trim(col), F.lit(fmt)) for fmt in TIMESTAMP_FORMATS])
    if source_timezone != "UTC":
        has_zone = F.trim(col).rlike(r"(Z|[+-]\d\d:?\d\d)$")
        parsed = F.when(has_zone, parsed).otherwise(F.to_utc_timestamp(parsed, source_timezone))
    return parsed


def parse_long(col: Column) -> Column:
    """A number (``"1234"``, ``"1234.0"``) as a long; null when not numeric."""
    return F.floor(F.trim(col).try_cast("double")).cast("long")


def parse_bool(col: Column) -> Column:
    """Common boolean spellings; null when unknown (an unknown flag is not a reason to drop a play)."""
    low = F.lower(F.trim(col))
    return F.when(low.isin(*TRUE_STRINGS), F.lit(True)).when(low.isin(*FALSE_STRINGS), F.lit(False))


def reason_column(
    df: DataFrame,
    *,
    now: dt.datetime,
    future_tolerance_minutes: int,
    max_ms_played: int,
    source_timezone: str,
) -> Column:
    """The first validation rule a raw row breaks, or null when it is clean."""
    all_null = F.lit(True)
    for field in RAW_EVENT_SCHEMA.fields:
        all_null = all_null & F.col(field.name).isNull()
    ts = parse_ts(F.col(C.TS), source_timezone)
    limit = F.lit(now + dt.timedelta(minutes=future_tolerance_minutes)).cast("timestamp")
    ms = parse_long(F.col(C.MS_PLAYED))
    return (
        F.when(all_null, F.lit(MALFORMED))
        .when(_blank(C.USER_ID), F.lit(MISSING_USER))
        .when(_blank(C.TRACK_ID), F.lit(MISSING_TRACK))
        .when(ts.isNull(), F.lit(UNPARSEABLE_TS))
        .when(ts > limit, F.lit(FUTURE_TS))
        # Absent is allowed (Last.fm scrobbles and MSSD carry no play length); present but not a number is not.
        .when(ms.isNull() & ~_blank(C.MS_PLAYED), F.lit(INVALID_MS))
        .when(ms < 0, F.lit(NEGATIVE_MS))
        .when(ms > max_ms_played, F.lit(ABSURD_MS))
    )


def event_id_column() -> Column:
    """The reader's natural id when it has one, else a content hash: identical plays get identical ids."""
    content = F.concat_ws(
        "\x1f",
        F.col(C.SOURCE),
        F.trim(F.col(C.USER_ID)),
        F.trim(F.col(C.TRACK_ID)),
        F.date_format(F.col("_ts"), "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"),
        F.col("_ms").cast("string"),
    )
    natural = F.when(~_blank(C.EVENT_ID), F.concat_ws(":", F.col(C.SOURCE), F.trim(F.col(C.EVENT_ID))))
    return F.coalesce(natural, F.substring(F.sha2(content, 256), 1, 32))


def validate_events(
    raw: DataFrame,
    *,
    now: dt.datetime,
    future_tolerance_minutes: int = 10,
    max_ms_played: int = 4 * 60 * 60 * 1000,
    source_timezone: str = "UTC",
) -> tuple[DataFrame, DataFrame]:
    """Split bronze rows into (clean events in the silver schema, quarantine rows).

    ``raw`` has the reader schema plus ``ingest_run_id`` and ``ingest_time``. Clean rows are not yet
    deduplicated (see :func:`dedupe_events`).
    """
    reason = reason_column(
        raw,
        now=now,
        future_tolerance_minutes=future_tolerance_minutes,
        max_ms_played=max_ms_played,
        source_timezone=source_timezone,
    )
    checked = raw.withColumn(C.REASON, reason)
    quarantine = checked.where(F.col(C.REASON).isNotNull()).select(*QUARANTINE.schema.fieldNames())
    clean = (
        checked.where(F.col(C.REASON).isNull())
        .withColumn("_ts", parse_ts(F.col(C.TS), source_timezone))
        .withColumn("_ms", parse_long(F.col(C.MS_PLAYED)))
        .select(
            event_id_column().alias(C.EVENT_ID),
            F.trim(C.USER_ID).alias(C.USER_ID),
            F.trim(C.TRACK_ID).alias(C.TRACK_ID),
            F.col("_ts").alias(C.TS),
            F.col("_ms").alias(C.MS_PLAYED),
            F.when(parse_long(F.col(C.TRACK_DURATION_MS)) > 0, parse_long(F.col(C.TRACK_DURATION_MS))).alias(
                C.TRACK_DURATION_MS
            ),
            F.col(C.CONTEXT_TYPE),
            F.col(C.CONTEXT_ID),
            F.col(C.REASON_START),
            F.col(C.REASON_END),
            parse_bool(F.col(C.SKIPPED)).alias(C.SKIPPED),
            parse_bool(F.col(C.SHUFFLE)).alias(C.SHUFFLE),
            parse_bool(F.col(C.SAVED)).alias(C.SAVED),
            F.col(C.SESSION_ID),
            parse_long(F.col(C.SESSION_POSITION)).cast("int").alias(C.SESSION_POSITION),
            F.col(C.SOURCE),
            F.col(C.SOURCE_FILE),
            F.col(C.INGEST_RUN_ID),
            F.to_date(F.col("_ts")).alias(C.EVENT_DATE),
            F.col(C.RECORD_NO),
        )
    )
    return clean, quarantine


PODCAST = "podcast"
AUDIOBOOK = "audiobook"
CONTENT_KINDS: dict[str, str] = {
    "episode:": PODCAST,
    "show:": PODCAST,
    "chapter:": AUDIOBOOK,
    "audiobook:": AUDIOBOOK,
}
"""Track-id prefixes of content that is not music (readers keep a Spotify URI's kind as prefix, see
:func:`spotrec.sources.frames.spotify_uri_id`) and what the ingest summary calls it."""


def content_kind(track_id: Column) -> Column:
    """``podcast`` / ``audiobook`` for non-music items (by track-id prefix), null for music."""
    out = F.lit(None).cast("string")
    for prefix, kind in reversed(CONTENT_KINDS.items()):
        out = F.when(F.trim(track_id).startswith(prefix), F.lit(kind)).otherwise(out)
    return out


def dedupe_events(clean: DataFrame) -> DataFrame:
    """One row per event_id: the first by (source_file, record_no), so the choice is deterministic."""
    from pyspark.sql.window import Window

    first = Window.partitionBy(C.EVENT_ID).orderBy(C.SOURCE_FILE, C.RECORD_NO)
    return (
        clean.withColumn("_n", F.row_number().over(first))
        .where(F.col("_n") == 1)
        .select(*SILVER_EVENTS.schema.fieldNames())
    )
