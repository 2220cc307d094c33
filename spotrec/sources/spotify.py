"""Spotify's own exports: account-data streaming history, extended streaming history, playlists.

- ``StreamingHistory*.json`` (account data, "basic"): a JSON array of ``endTime`` (UTC,
  ``yyyy-MM-dd HH:mm``), ``artistName``, ``trackName``, ``msPlayed``. No ids, so the track id comes
  from the names (:func:`~spotrec.sources.frames.name_track_id`); podcasts are mixed in (the newer split
  export names them ``podcastName`` / ``episodeName``: those rows get ``episode:`` ids, which ingest's
  content policy keeps out of silver).
- ``Streaming_History_Audio_*.json`` (extended): per play ``ts`` (UTC), ``ms_played``, the track URI
  and names, ``reason_start``/``reason_end``, ``shuffle``, ``skipped``... and personal fields (IP
  address, country, device, user agent, account name). Only :data:`EXTENDED_ALLOWED_FIELDS` are read;
  nothing else reaches any output column, ``raw`` included.
- ``Playlist1.json``: ``{"playlists": [{name, lastModifiedDate, items: [{track: {...}}]}]}``.

In both histories ``ts`` is when the play *ended*, as Spotify records it; ``ms_played`` says how long
it lasted. The export holds one person's data and names no user, so ``user_id`` comes from the
``user_id`` option, by default ``export:<name of the folder holding the file>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.errors import ReaderFormatError
from spotrec.sources.frames import (
    empty_events,
    empty_frame,
    iso_utc,
    name_track_id,
    playlists_frame,
    reader_frame,
    spotify_uri_id,
    tracks_frame,
)
from spotrec.sources.json_records import JSON_MAP, check_json_heads, json_records, missing_keys
from spotrec.sources.text import LOG, TEXT, blank_to_null, path_component
from spotrec.tables import PLAYLISTS, TRACKS

STREAMING_HISTORY = "spotify_streaming_history"
EXTENDED = "spotify_extended"
PLAYLIST = "spotify_playlist"
MPD = "spotify_mpd"

EXTENDED_ALLOWED_FIELDS: tuple[str, ...] = (
    "ts",
    "ms_played",
    "spotify_track_uri",
    "master_metadata_track_name",
    "master_metadata_album_artist_name",
    "master_metadata_album_album_name",
    "spotify_episode_uri",
    "episode_name",
    "episode_show_name",
    "audiobook_title",
    "audiobook_uri",
    "audiobook_chapter_uri",
    "audiobook_chapter_title",
    "reason_start",
    "reason_end",
    "shuffle",
    "skipped",
    "offline",
    "offline_timestamp",
    "incognito_mode",
)
"""The extended-history fields spotrec reads: an allow-list, so fields Spotify adds later stay out too."""

PERSONAL_FIELDS: tuple[str, ...] = (
    "username",
    "platform",
    "conn_country",
    "ip_addr",
    "ip_addr_decrypted",
    "user_agent_decrypted",
    "city",
    "region",
    "metro_code",
    "latitude",
    "longitude",
)
"""Personal fields known in extended exports; masked in the text of a line too broken to parse."""


def default_user(source_file: Column) -> Column:
    """``export:<folder holding the file>`` (the export folder is usually named after its owner)."""
    return F.concat(F.lit("export:"), path_component(source_file, -2))


def _user(user_id: str | None) -> Column:
    return F.lit(user_id) if user_id is not None else default_user(F.col(C.SOURCE_FILE))


def read_streaming_history(spark: SparkSession, path: str, *, user_id: str | None = None) -> DataFrame:
    """Read account-data ``StreamingHistory*.json`` files into :data:`~spotrec.tables.READER_SCHEMA`.

    Args:
        spark: the session.
        path: a file, folder or glob of ``StreamingHistory*.json`` files.
        user_id: the listener's id; default ``export:<folder name>`` per file.

    Returns:
        One row per play (``record_no`` = element index from 1); ``raw`` is the element's JSON;
        ``track_id`` the name-based id; ``ts`` ISO-8601 UTC. ``skipped`` is null: this format has no
        skip flag (``ms_played`` is its only skip signal, judged downstream).

    Raises:
        ReaderFormatError: a file is not a JSON array, or its first element lacks ``endTime`` /
            ``msPlayed`` / a track or artist name.
    """
    src = json_records(spark, path, STREAMING_HISTORY, lines=False)
    check_json_heads(
        STREAMING_HISTORY,
        src.heads,
        missing_keys(["endTime", "msPlayed"], any_of=["trackName", "artistName", "episodeName", "podcastName"]),
    )
    if not src.heads:
        return empty_events(spark)
    m = F.from_json(TEXT, JSON_MAP)
    df = src.records.withColumn("_m", m)
    g = F.col("_m").getItem
    artist = F.coalesce(g("artistName"), g("podcastName"))
    track = F.coalesce(g("trackName"), g("episodeName"))
    # The split export names podcast plays podcastName / episodeName: mark them as episodes (ingest's
    # content policy keeps them out of silver unless ingest.content is "all").
    is_episode = g("episodeName").isNotNull() | g("podcastName").isNotNull()
    track_id = F.when(is_episode, F.concat(F.lit("episode:"), name_track_id(artist, track))).otherwise(
        name_track_id(artist, track)
    )
    return reader_frame(
        df,
        source=STREAMING_HISTORY,
        raw=F.col(TEXT),
        ok=F.col("_m").isNotNull(),
        fields={
            C.USER_ID: _user(user_id),
            C.TRACK_ID: track_id,
            C.TRACK_NAME: track,
            C.ARTIST_NAME: artist,
            C.TS: iso_utc(g("endTime")),
            C.MS_PLAYED: g("msPlayed"),
        },
    )


def redact_personal(text: Column) -> Column:
    """Mask personal data in record text that could not be parsed (so it cannot be allow-listed).

    Values of :data:`PERSONAL_FIELDS` keys become ``"<redacted>"`` and anything shaped like an IPv4 or
    IPv6 address becomes ``<ip>``.
    """
    keys = "|".join(PERSONAL_FIELDS)
    out = F.regexp_replace(text, rf'"({keys})"\s*:\s*("(?:[^"\\]|\\.)*"?|[^,}}\]]*)', r'"$1":"<redacted>"')
    out = F.regexp_replace(out, r"\b\d{1,3}(?:\.\d{1,3}){3}\b", "<ip>")
    out = F.regexp_replace(out, r"(?i)\b(?:[0-9a-f]{1,4}:){3,7}[0-9a-f]{1,4}\b", "<ip>")
    return F.regexp_replace(out, r"(?i)\b[0-9a-f]{0,4}(?::[0-9a-f]{0,4})*::[0-9a-f:]*[0-9a-f]\b", "<ip>")


def read_extended_history(
    spark: SparkSession, path: str, *, user_id: str | None = None, json_lines: bool | None = None
) -> DataFrame:
    """Read Spotify *extended* streaming history (JSON arrays or JSON lines) into READER_SCHEMA.

    Args:
        spark: the session.
        path: a file, folder or glob of ``Streaming_History_Audio_*.json`` files (or JSON-lines files
            of the same records).
        user_id: the listener's id; default ``export:<folder name>``. The export's ``username`` is a
            personal field and is never read.
        json_lines: True / False when every file is JSON lines / a JSON array (False saves a pass);
            None detects it per file.

    Returns:
        One row per play. ``track_id`` is the id in ``spotify_track_uri`` (``episode:<id>`` for a
        podcast episode); ``skipped`` and ``shuffle`` are ``true``/``false`` as exported; ``raw`` is
        the record restricted to :data:`EXTENDED_ALLOWED_FIELDS` (values as text), or, for a line
        that is not JSON, the line with personal values masked (:func:`redact_personal`).

    Raises:
        ReaderFormatError: the first record of a file lacks ``ts`` / ``ms_played`` or any track or
            episode field.
    """
    src = json_records(spark, path, EXTENDED, lines=json_lines)
    check_json_heads(
        EXTENDED,
        src.heads,
        missing_keys(
            ["ts", "ms_played"],
            any_of=[
                "spotify_track_uri",
                "master_metadata_track_name",
                "spotify_episode_uri",
                "episode_name",
                "audiobook_uri",
                "audiobook_chapter_uri",
            ],
        ),
    )
    if not src.heads:
        return empty_events(spark)
    allowed = F.array(*[F.lit(k) for k in EXTENDED_ALLOWED_FIELDS])
    parsed = F.from_json(TEXT, JSON_MAP)
    df = src.records.withColumn("_m", F.map_filter(parsed, lambda k, _v: F.array_contains(allowed, k)))
    g = F.col("_m").getItem
    ok = F.col("_m").isNotNull()
    raw = F.when(ok, F.to_json("_m")).otherwise(redact_personal(F.col(TEXT)))
    return reader_frame(
        df,
        source=EXTENDED,
        raw=raw,
        ok=ok,
        fields={
            C.USER_ID: _user(user_id),
            C.TRACK_ID: spotify_uri_id(
                F.coalesce(
                    g("spotify_track_uri"), g("spotify_episode_uri"), g("audiobook_chapter_uri"), g("audiobook_uri")
                )
            ),
            C.TRACK_NAME: F.coalesce(g("master_metadata_track_name"), g("episode_name"), g("audiobook_chapter_title")),
            C.ARTIST_NAME: F.coalesce(
                g("master_metadata_album_artist_name"), g("episode_show_name"), g("audiobook_title")
            ),
            C.ALBUM_NAME: g("master_metadata_album_album_name"),
            C.TS: iso_utc(g("ts")),
            C.MS_PLAYED: g("ms_played"),
            C.REASON_START: g("reason_start"),
            C.REASON_END: g("reason_end"),
            C.SKIPPED: g("skipped"),
            C.SHUFFLE: g("shuffle"),
        },
    )


@dataclass(frozen=True)
class PlaylistRead:
    """What a playlist reader returns.

    Attributes:
        playlists: rows in :data:`~spotrec.tables.PLAYLISTS`' schema (one per playlist position).
        tracks: rows in :data:`~spotrec.tables.TRACKS`' schema, one per track id named in the input.
    """

    playlists: DataFrame
    tracks: DataFrame


_TRACK = T.StructType([T.StructField(n, T.StringType()) for n in ("trackName", "artistName", "albumName", "trackUri")])
_EPISODE = T.StructType([T.StructField(n, T.StringType()) for n in ("episodeName", "showName", "episodeUri")])
_PLAYLIST_FILE = T.StructType(
    [
        T.StructField(
            "playlists",
            T.ArrayType(
                T.StructType(
                    [
                        T.StructField("name", T.StringType()),
                        T.StructField("lastModifiedDate", T.StringType()),
                        T.StructField(
                            "items",
                            T.ArrayType(
                                T.StructType(
                                    [
                                        T.StructField("track", _TRACK),
                                        T.StructField("episode", _EPISODE),
                                        T.StructField(
                                            "localTrack", T.StructType([T.StructField("uri", T.StringType())])
                                        ),
                                    ]
                                )
                            ),
                        ),
                    ]
                )
            ),
        )
    ]
)


def _playlist_documents(spark: SparkSession, path: str, reader: str, schema: T.StructType) -> DataFrame | None:
    """JSON documents with a top-level ``playlists`` array, one row per file (None when there are none).

    Raises:
        ReaderFormatError: no file matches, or a file has no ``playlists`` array.
    """
    try:
        files = spark.read.json(path, schema=schema, multiLine=True).select(
            F.col("_metadata.file_path").alias(C.SOURCE_FILE), "playlists"
        )
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc):
            raise ReaderFormatError(reader, path, None, "no file matches this path") from exc
        raise
    checks = files.select(C.SOURCE_FILE, F.col("playlists").isNull().alias("bad")).collect()
    for row in sorted(checks, key=lambda r: r[C.SOURCE_FILE]):
        if row["bad"]:
            raise ReaderFormatError(reader, row[C.SOURCE_FILE], None, 'no top-level "playlists" array')
    if not checks:
        LOG.warning("%s: no playlists in %s (empty file or folder)", reader, path)
        return None
    return files


def read_spotify_playlists(spark: SparkSession, path: str, *, user_id: str | None = None) -> PlaylistRead:
    """Read account-data ``Playlist*.json`` files.

    Args:
        spark: the session.
        path: a file, folder or glob of ``Playlist*.json`` files.
        user_id: the owner; default ``export:<folder name>``.

    Returns:
        :class:`PlaylistRead`. ``playlist_id`` is ``spotify_playlist:`` + sha1 of (user, file name,
        playlist name, and for the k-th repeat of a name in one file, k): stable across re-exports
        and moves of the folder. ``position`` is the item's 0-based index in the playlist; an item with
        neither track, episode nor local file carries no id and is left out (its index is skipped).
        Episodes get ``episode:<id>`` track ids, local files their ``spotify:local:`` URI.

    Raises:
        ReaderFormatError: a file has no top-level ``playlists`` array.
    """
    files = _playlist_documents(spark, path, PLAYLIST, _PLAYLIST_FILE)
    if files is None:
        return PlaylistRead(empty_frame(spark, PLAYLISTS.schema), empty_frame(spark, TRACKS.schema))
    names = F.transform("playlists", lambda p: p["name"])
    per_playlist = files.select(C.SOURCE_FILE, names.alias("_names"), F.posexplode("playlists").alias("_p", "_pl"))
    # How many earlier playlists in the same file share this name: 0 for nearly all.
    repeat = F.size(F.filter(F.slice("_names", 1, F.col("_p")), lambda n: n == F.col("_pl.name")))
    user = _user(user_id)
    base_name = path_component(F.col(C.SOURCE_FILE), -1)
    key = F.concat_ws("\x1f", user, base_name, F.col("_pl.name"), F.when(repeat > 0, repeat.cast("string")))
    items = per_playlist.select(
        F.concat(F.lit("spotify_playlist:"), F.sha1(key.cast("binary"))).alias(C.PLAYLIST_ID),
        F.col("_pl.name").alias(C.PLAYLIST_NAME),
        user.alias(C.USER_ID),
        F.posexplode("_pl.items").alias(C.POSITION, "_item"),
    )
    uri = F.coalesce(F.col("_item.track.trackUri"), F.col("_item.episode.episodeUri"), F.col("_item.localTrack.uri"))
    items = items.withColumn(C.TRACK_ID, spotify_uri_id(uri))
    playlists = playlists_frame(
        items,
        source=PLAYLIST,
        fields={c: F.col(c) for c in (C.PLAYLIST_ID, C.PLAYLIST_NAME, C.USER_ID, C.POSITION, C.TRACK_ID)},
    )
    tracks = tracks_frame(
        items,
        source=PLAYLIST,
        fields={
            C.TRACK_ID: F.col(C.TRACK_ID),
            C.TRACK_NAME: F.coalesce(F.col("_item.track.trackName"), F.col("_item.episode.episodeName")),
            C.ARTIST_NAME: F.coalesce(F.col("_item.track.artistName"), F.col("_item.episode.showName")),
            C.ALBUM_NAME: F.col("_item.track.albumName"),
        },
    )
    return PlaylistRead(playlists, tracks)


_MPD_TRACK_FIELDS = ("track_uri", "track_name", "artist_uri", "artist_name", "album_uri", "album_name")
_MPD_FILE = T.StructType(
    [
        T.StructField(
            "playlists",
            T.ArrayType(
                T.StructType(
                    [
                        T.StructField("pid", T.LongType()),
                        T.StructField("name", T.StringType()),
                        T.StructField(
                            "tracks",
                            T.ArrayType(
                                T.StructType(
                                    [
                                        T.StructField("pos", T.IntegerType()),
                                        *[T.StructField(n, T.StringType()) for n in _MPD_TRACK_FIELDS],
                                        T.StructField("duration_ms", T.LongType()),
                                    ]
                                )
                            ),
                        ),
                    ]
                )
            ),
        )
    ]
)


def read_mpd_playlists(spark: SparkSession, path: str) -> PlaylistRead:
    """Read Spotify Million Playlist Dataset slices (``mpd.slice.*.json``).

    The dataset's terms forbid redistribution, so no sample ships; its format is ``{"info": ...,
    "playlists": [{"pid", "name", "tracks": [{"pos", "track_uri", "track_name", "artist_uri",
    "artist_name", "album_uri", "album_name", "duration_ms"}]}]}``.

    Args:
        spark: the session.
        path: a slice file, a folder of slices or a glob.

    Returns:
        :class:`PlaylistRead`: ``playlist_id`` = ``mpd:<pid>``, ``position`` = ``pos``, no user (the
        dataset is anonymous); tracks with artist and album ids and ``duration_ms``.

    Raises:
        ReaderFormatError: a file has no top-level ``playlists`` array.
    """
    files = _playlist_documents(spark, path, MPD, _MPD_FILE)
    if files is None:
        return PlaylistRead(empty_frame(spark, PLAYLISTS.schema), empty_frame(spark, TRACKS.schema))
    items = (
        files.select(F.explode("playlists").alias("_pl"))
        .select("_pl.pid", "_pl.name", F.explode("_pl.tracks").alias("_t"))
        .select(
            F.concat(F.lit("mpd:"), F.col("pid").cast("string")).alias(C.PLAYLIST_ID),
            F.col("name").alias(C.PLAYLIST_NAME),
            F.col("_t.pos").alias(C.POSITION),
            spotify_uri_id(F.col("_t.track_uri")).alias(C.TRACK_ID),
            "_t",
        )
    )
    playlists = playlists_frame(
        items, source=MPD, fields={c: F.col(c) for c in (C.PLAYLIST_ID, C.PLAYLIST_NAME, C.POSITION, C.TRACK_ID)}
    )

    def uri_tail(name: str) -> Column:
        return blank_to_null(F.regexp_extract(F.col(name), r"^spotify:[a-z]+:(.*)$", 1))

    tracks = tracks_frame(
        items,
        source=MPD,
        fields={
            C.TRACK_ID: F.col(C.TRACK_ID),
            C.TRACK_NAME: F.col("_t.track_name"),
            C.ARTIST_ID: uri_tail("_t.artist_uri"),
            C.ARTIST_NAME: F.col("_t.artist_name"),
            C.ALBUM_ID: uri_tail("_t.album_uri"),
            C.ALBUM_NAME: F.col("_t.album_name"),
            C.DURATION_MS: F.col("_t.duration_ms"),
        },
    )
    return PlaylistRead(playlists, tracks)
