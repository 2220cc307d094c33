"""Spotify's Music Streaming Sessions Dataset (Sequential Skip Prediction Challenge).

The session log (``log_*.csv``) has one row per play in a listening session of up to 20 tracks. Some
copies name 19 columns in the header while the rows carry 21: the two unnamed trailing values are
``hist_user_behavior_reason_start`` and ``hist_user_behavior_reason_end``, which the full header
names at the end. Columns are therefore located through each file's own header, and a 19-name header
without those two is read as if they followed.

Mapping decisions:

- ``skipped`` = ``skip_2``. The dataset has three nested skip flags (``skip_1``: played very
  briefly, ``skip_2``: briefly, ``skip_3``: most of it not played) and ``not_skipped``. The challenge
  scores predictions of ``skip_2``, so it is the dataset's own definition of "a skip".
- ``user_id`` = ``mssd:`` + ``session_id``. MSSD publishes no user ids (sessions are anonymous and
  unlinkable), so each session is its own pseudo-user: per-user models see one session each.
- ``event_id`` = ``session_id:session_position``, unique in the dataset.
- ``ts``: the log has only a date (``dd-mm-yy``, or ``yyyy-mm-dd`` in other copies) and an hour of
  day; ``ts`` is that date at 00:00 UTC. Order within a day comes from ``session_position``, not from
  invented clock times.
- ``ms_played`` is null: the log records skips, not durations.

The track-features file (``tf_*.csv``: ``track_id``, ``duration`` in seconds, ``acousticness``, ...,
``acoustic_vector_0..7``) fills ``silver.tracks``.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.errors import ReaderFormatError
from spotrec.sources.frames import empty_events, empty_frame, iso_utc, reader_frame, tracks_frame
from spotrec.sources.text import FileHead, Layout, blank_to_null, header_mapped, numbered_lines
from spotrec.tables import TRACKS

MSSD = "mssd"
MSSD_TRACK_FEATURES = "mssd_track_features"

LOG_REQUIRED: tuple[str, ...] = ("session_id", "session_position", "track_id_clean", "skip_2", "date")
LOG_OPTIONAL: tuple[str, ...] = (
    "hist_user_behavior_is_shuffle",
    "context_type",
    "hist_user_behavior_reason_start",
    "hist_user_behavior_reason_end",
)
_TRAILING = ("hist_user_behavior_reason_start", "hist_user_behavior_reason_end")

FEATURE_COLUMNS: tuple[str, ...] = ("acousticness", "danceability", "energy", "valence", "tempo")
"""Track features kept in silver.tracks (the ones its schema declares)."""
ACOUSTIC_VECTOR: tuple[str, ...] = tuple(f"acoustic_vector_{i}" for i in range(8))


def _log_layout(head: FileHead, header: list[str]) -> Layout:
    missing = [c for c in LOG_REQUIRED if c not in header]
    if missing:
        raise ReaderFormatError(MSSD, head.source_file, head.record_no, f"header lacks column(s) {missing}")
    indices: dict[str, int | None] = {name: i + 1 for i, name in enumerate(header)}
    widths: tuple[int, ...] = (len(header),)
    if not any(t in header for t in _TRAILING):
        # The short header: rows may carry the two reason columns after the named ones.
        indices.update({t: len(header) + 1 + i for i, t in enumerate(_TRAILING)})
        widths = (len(header), len(header) + 2)
    return Layout({n: indices.get(n) for n in (*LOG_REQUIRED, *LOG_OPTIONAL)}, widths)


def mssd_date(date: Column) -> Column:
    """``dd-mm-yy`` -> ``20yy-mm-dd`` (the dataset is from 2018); other text unchanged."""
    return F.when(
        date.rlike(r"^\d{2}-\d{2}-\d{2}$"),
        F.concat(
            F.lit("20"),
            F.substring(date, 7, 2),
            F.lit("-"),
            F.substring(date, 4, 2),
            F.lit("-"),
            F.substring(date, 1, 2),
        ),
    ).otherwise(date)


def bool_text(value: Column) -> Column:
    """MSSD's ``True``/``False`` as ``true``/``false`` (other text unchanged, for ingest to judge)."""
    lowered = F.lower(F.trim(value))
    return F.when(lowered.isin("true", "false"), lowered).otherwise(value)


def read_mssd_log(spark: SparkSession, path: str) -> DataFrame:
    """Read MSSD session-log CSV files into :data:`~spotrec.tables.READER_SCHEMA` (see module doc).

    Args:
        spark: the session.
        path: a file, folder or glob of MSSD log CSV files.

    Returns:
        One row per play; a row whose field count fits neither the header nor header + 2 comes back
        with only ``raw`` set (ingest: malformed_record).

    Raises:
        ReaderFormatError: a file's first line is not an MSSD header (lacks session_id, ...).
    """
    numbered = numbered_lines(spark, path, MSSD)
    if not numbered.heads:
        return empty_events(spark)
    wanted = (*LOG_REQUIRED, *LOG_OPTIONAL)
    df = header_mapped(spark, numbered, _log_layout, wanted, delimiter=",", quoted=True)
    v = {name: blank_to_null(F.col(name)) for name in wanted}
    session, position = v["session_id"], v["session_position"]
    return reader_frame(
        df,
        source=MSSD,
        raw=F.col(C.RAW),
        ok=F.col("ok"),
        fields={
            C.EVENT_ID: F.concat(session, F.lit(":"), position),
            C.USER_ID: F.concat(F.lit("mssd:"), session),
            C.TRACK_ID: v["track_id_clean"],
            C.TS: iso_utc(mssd_date(v["date"])),
            C.CONTEXT_TYPE: v["context_type"],
            C.REASON_START: v["hist_user_behavior_reason_start"],
            C.REASON_END: v["hist_user_behavior_reason_end"],
            C.SKIPPED: bool_text(v["skip_2"]),
            C.SHUFFLE: bool_text(v["hist_user_behavior_is_shuffle"]),
            C.SESSION_ID: session,
            C.SESSION_POSITION: position,
        },
    )


def _features_layout(head: FileHead, header: list[str]) -> Layout:
    missing = [c for c in ("track_id", "duration") if c not in header]
    if missing:
        raise ReaderFormatError(MSSD_TRACK_FEATURES, head.source_file, head.record_no, f"header lacks {missing}")
    indices = {name: i + 1 for i, name in enumerate(header)}
    names = ("track_id", "duration", *FEATURE_COLUMNS, *ACOUSTIC_VECTOR)
    return Layout({n: indices.get(n) for n in names}, (len(header),))


def read_mssd_track_features(spark: SparkSession, path: str, *, with_acoustic_vector: bool = False) -> DataFrame:
    """Read MSSD track-features CSV files into :data:`~spotrec.tables.TRACKS`' columns.

    Args:
        spark: the session.
        path: a file, folder or glob of ``tf_*.csv`` files.
        with_acoustic_vector: also return ``acoustic_vector`` (array of the 8 ``acoustic_vector_i``
            doubles), e.g. as track features for the RL user model; it is not a silver.tracks column.

    Returns:
        One row per track id: ``duration_ms`` = round(duration seconds x 1000), the five features
        as doubles (null where not numeric), names null (MSSD publishes none), ``source`` = ``mssd``.
        Rows with the wrong field count are left out: they carry no trustworthy track id.

    Raises:
        ReaderFormatError: a file's header lacks ``track_id`` or ``duration``.
    """
    numbered = numbered_lines(spark, path, MSSD_TRACK_FEATURES)
    names = ("track_id", "duration", *FEATURE_COLUMNS, *ACOUSTIC_VECTOR)
    if not numbered.heads:
        empty = empty_frame(spark, TRACKS.schema)
        return empty.withColumn("acoustic_vector", F.array().cast("array<double>")) if with_acoustic_vector else empty
    df = header_mapped(spark, numbered, _features_layout, names, delimiter=",", quoted=True).where("ok")
    num = {n: blank_to_null(F.col(n)).try_cast("double") for n in names if n != "track_id"}
    tracks = tracks_frame(
        df,
        source=MSSD,
        fields={
            C.TRACK_ID: blank_to_null(F.col("track_id")),
            C.DURATION_MS: F.round(num["duration"] * 1000).cast("long"),
            **{n: num[n] for n in FEATURE_COLUMNS},
        },
    )
    if not with_acoustic_vector:
        return tracks
    vectors = (
        df.select(
            blank_to_null(F.col("track_id")).alias("_tid"), F.array(*[num[n] for n in ACOUSTIC_VECTOR]).alias("_v")
        )
        .groupBy("_tid")
        .agg(F.min("_v").alias("acoustic_vector"))
    )
    return tracks.join(vectors, tracks[C.TRACK_ID] == vectors["_tid"], "left").drop("_tid")
