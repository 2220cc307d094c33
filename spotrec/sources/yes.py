"""Cornell's Yes.com radio playlists (Chen et al., KDD 2012).

``train.txt`` / ``test.txt``: two header lines (the song ids, then their counts), then one playlist
per line as space-separated song ids (each line ends with a space). ``song_hash.txt``: ``id \\t title
\\t artist`` with ``/`` written ``\\/``. Song ids are small integers, so they are namespaced as
``yes:<id>`` to keep them apart from other sources' ids. The playlists are radio programmes: no
name, no user.
"""

from __future__ import annotations

import os
import re

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.errors import ReaderFormatError
from spotrec.sources.frames import empty_frame, playlists_frame, tracks_frame
from spotrec.sources.spotify import PlaylistRead
from spotrec.sources.text import LINE, LOG, blank_to_null, field, nonblank, numbered_lines, path_component, split_fields
from spotrec.tables import PLAYLISTS, TRACKS

YES = "yes"
HEADER_LINES = 2
_INTS = re.compile(r"^\s*\d+(\s+\d+)*\s*$")


def _playlist_files(path: str) -> str | list[str]:
    """A folder means those of its ``train.txt`` and ``test.txt`` that exist; a file or glob is used as given.

    Listing them (rather than globbing ``{train,test}.txt``) keeps Spark from logging a Java
    FileNotFoundException for a folder without ``test.txt``.
    """
    if not os.path.isdir(path):
        return path
    present = [os.path.join(path, n) for n in ("train.txt", "test.txt") if os.path.isfile(os.path.join(path, n))]
    return present or os.path.join(path, "train.txt")


def _song_hash_path(path: str) -> str:
    folder = path if os.path.isdir(path) else os.path.dirname(path.rstrip("/"))
    return os.path.join(folder, "song_hash.txt")


def read_yes_playlists(spark: SparkSession, path: str, *, song_hash: str | None = None) -> PlaylistRead:
    """Read Yes.com playlist files and their song list.

    Args:
        spark: the session.
        path: a playlist file (``train.txt``), a glob of them, or the dataset folder (meaning its
            ``train.txt`` and ``test.txt``).
        song_hash: the song list; default ``song_hash.txt`` next to the playlist files (no tracks,
            with a warning, when it is absent).

    Returns:
        :class:`~spotrec.sources.spotify.PlaylistRead`: ``playlist_id`` = ``yes:<file stem>:<line
        number>``, ``position`` = 0-based index in the line, ``track_id`` = ``yes:<song id>``; tracks
        with names and artists from the song list.

    Raises:
        ReaderFormatError: a file's first line is not the list of song ids.
    """
    numbered = numbered_lines(spark, _playlist_files(path), YES)
    for head in numbered.heads.values():
        if not _INTS.match(head.text):
            raise ReaderFormatError(
                YES,
                head.source_file,
                head.record_no,
                f"expected a header of space-separated song ids, found {head.text[:60]!r}",
            )
    if numbered.heads:
        stem = F.regexp_replace(path_component(F.col(C.SOURCE_FILE), -1), r"\.[^.]*$", "")
        items = (
            numbered.lines.where((F.col(C.RECORD_NO) > HEADER_LINES) & nonblank(LINE))
            .select(
                F.concat(F.lit("yes:"), stem, F.lit(":"), F.col(C.RECORD_NO).cast("string")).alias(C.PLAYLIST_ID),
                F.posexplode(F.split(F.trim(F.col(LINE)), r"\s+")).alias(C.POSITION, "_song"),
            )
            .withColumn(C.TRACK_ID, F.concat(F.lit("yes:"), F.col("_song")))
        )
        playlists = playlists_frame(
            items, source=YES, fields={c: F.col(c) for c in (C.PLAYLIST_ID, C.POSITION, C.TRACK_ID)}
        )
    else:
        playlists = empty_frame(spark, PLAYLISTS.schema)
    return PlaylistRead(playlists, read_yes_songs(spark, song_hash or _song_hash_path(path)))


def read_yes_songs(spark: SparkSession, path: str) -> DataFrame:
    """Read ``song_hash.txt`` into :data:`~spotrec.tables.TRACKS`' schema (empty, with a warning, if absent).

    Lines without three tab-separated fields are left out (no id to key them on).
    """
    try:
        numbered = numbered_lines(spark, path, YES)
    except ReaderFormatError:
        LOG.warning("%s: no song list at %s; playlists are read without track names", YES, path)
        return empty_frame(spark, TRACKS.schema)
    for head in numbered.heads.values():
        if len(head.text.split("\t")) != 3:
            raise ReaderFormatError(YES, head.source_file, head.record_no, "expected 'id<TAB>title<TAB>artist'")
    fields = split_fields(F.col(LINE), "\t", quoted=False)
    df = numbered.lines.where(nonblank(LINE)).withColumn("_f", fields).where(F.size("_f") == 3)

    def unescape(i: int) -> Column:
        return blank_to_null(F.regexp_replace(field(F.col("_f"), i), r"\\/", "/"))

    return tracks_frame(
        df,
        source=YES,
        fields={
            C.TRACK_ID: F.concat(F.lit("yes:"), F.trim(field(F.col("_f"), 0))),
            C.TRACK_NAME: unescape(1),
            C.ARTIST_NAME: unescape(2),
        },
    )
