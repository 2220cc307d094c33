"""Last.fm data: the 1K-users scrobble log (events) and HetRec 2011's user-artist play counts.

- Last.fm 1K (Celma): ``userid-timestamp-artid-artname-traid-traname.tsv``, tab-separated, no header:
  user id, ISO timestamp (UTC, ``Z``), artist MBID, artist name, track MBID, track name. MBIDs may be
  empty; then the track id falls back to the name-based id, the same one Spotify's basic export gets,
  so both sources name one song alike. A scrobble records that a track was played, not for how long,
  so ``ms_played`` is null.
- HetRec 2011 Last.fm 2K: ``user_artists.dat``, tab-separated with header ``userID artistID weight``
  and CRLF line ends; weight is a play count and the items are artists.
"""

from __future__ import annotations

import re

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.errors import ReaderFormatError
from spotrec.sources.frames import empty_events, empty_frame, iso_utc, name_track_id, play_counts_frame, reader_frame
from spotrec.sources.text import LINE, blank_to_null, field, nonblank, numbered_lines, split_fields
from spotrec.tables import PLAY_COUNTS

LASTFM_1K = "lastfm_1k"
HETREC = "hetrec"
LASTFM_CONTEXT = "lastfm"
"""``context_type`` of Last.fm plays: the log says nothing about where a play started."""

_LASTFM_FIELDS = 6
_ISO_PREFIX = r"^\d{4}-\d{2}-\d{2}T"


def read_lastfm_1k(spark: SparkSession, path: str) -> DataFrame:
    """Read Last.fm 1K TSV files into :data:`~spotrec.tables.READER_SCHEMA`.

    Args:
        spark: the session.
        path: a file, folder or glob of Last.fm 1K TSV files.

    Returns:
        One row per non-blank line (``record_no`` = line number). ``track_id`` is the track MBID or,
        when empty, the name-based id; ``context_type`` is ``lastfm``. A line without exactly 6
        tab-separated fields comes back with only ``raw`` set (ingest: malformed_record).

    Raises:
        ReaderFormatError: a file's first line does not have 6 fields with an ISO timestamp second.
    """
    numbered = numbered_lines(spark, path, LASTFM_1K)
    for head in numbered.heads.values():
        fields = head.text.split("\t")
        if len(fields) != _LASTFM_FIELDS:
            raise ReaderFormatError(
                LASTFM_1K, head.source_file, head.record_no, f"expected 6 tab-separated fields, found {len(fields)}"
            )
        if not re.match(_ISO_PREFIX, fields[1]):
            raise ReaderFormatError(
                LASTFM_1K, head.source_file, head.record_no, f"second field {fields[1]!r} is not a timestamp"
            )
    if not numbered.heads:
        return empty_events(spark)
    df = numbered.lines.where(nonblank(LINE)).withColumn("_f", split_fields(F.col(LINE), "\t", quoted=False))
    f = [blank_to_null(field(F.col("_f"), i)) for i in range(_LASTFM_FIELDS)]
    user, ts, _artist_mbid, artist, track_mbid, track = f
    return reader_frame(
        df,
        source=LASTFM_1K,
        raw=F.col(LINE),
        ok=F.size("_f") == _LASTFM_FIELDS,
        fields={
            C.USER_ID: user,
            C.TS: iso_utc(ts),
            C.ARTIST_NAME: artist,
            C.TRACK_NAME: track,
            C.TRACK_ID: F.coalesce(track_mbid, name_track_id(artist, track)),
            C.CONTEXT_TYPE: F.lit(LASTFM_CONTEXT),
        },
    )


def read_hetrec(spark: SparkSession, path: str, *, user_prefix: str = "hetrec:") -> DataFrame:
    """Read HetRec 2011 ``user_artists.dat`` into :data:`~spotrec.tables.PLAY_COUNTS`' schema.

    Args:
        spark: the session.
        path: the ``user_artists.dat`` file (or a glob of files in that format).
        user_prefix: prefixed to HetRec's numeric user ids so they cannot collide with another
            source's users.

    Returns:
        ``user_id`` = prefix + userID, ``track_id`` = ``artist:`` + artistID (the items are artists),
        ``play_count`` = weight, ``source`` = ``hetrec``. Lines that are not three integer fields are
        left out: a count without a user, item and number cannot be kept in the table.

    Raises:
        ReaderFormatError: a file's first line is neither the header ``userID artistID weight`` nor
            three integers.
    """
    numbered = numbered_lines(spark, path, HETREC)
    header_files: list[str] = []
    for head in numbered.heads.values():
        fields = [x.strip() for x in head.text.split("\t")]
        if [x.lower() for x in fields] == ["userid", "artistid", "weight"]:
            header_files.append(head.source_file)
        elif not (len(fields) == 3 and all(x.isdigit() for x in fields)):
            raise ReaderFormatError(
                HETREC,
                head.source_file,
                head.record_no,
                f"expected 'userID<TAB>artistID<TAB>weight', found {head.text[:60]!r}",
            )
    if not numbered.heads:
        return empty_frame(spark, PLAY_COUNTS.schema)
    is_header = F.lit(False)
    for f in header_files:
        is_header = is_header | ((F.col(C.SOURCE_FILE) == f) & (F.col(C.RECORD_NO) == numbered.heads[f].record_no))
    df = (
        numbered.lines.where(nonblank(LINE) & ~is_header)
        .withColumn("_f", F.transform(split_fields(F.col(LINE), "\t", quoted=False), lambda x: F.trim(x)))
        .where(F.size("_f") == 3)
    )
    return play_counts_frame(
        df,
        source=HETREC,
        fields={
            C.USER_ID: F.concat(F.lit(user_prefix), blank_to_null(field(F.col("_f"), 0))),
            C.TRACK_ID: F.concat(F.lit("artist:"), blank_to_null(field(F.col("_f"), 1))),
            C.PLAY_COUNT: field(F.col("_f"), 2).try_cast("long"),
        },
    )
