"""Readers: real samples in ../shared/data (exact rows) and tiny hand-written files for the edge cases."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.errors import ConfigError, ReaderFormatError
from spotrec.sources import (
    EVENT_READERS,
    iso_utc,
    read_events,
    read_play_counts,
    read_playlists,
    read_track_features,
)
from spotrec.sources.frames import CANONICAL_FIELDS
from spotrec.sources.text import numbered_lines
from spotrec.tables import PLAY_COUNTS, PLAYLISTS, READER_SCHEMA, TRACKS
from tests.conftest import shared_data


def name_id(artist: str, track: str) -> str:
    """The documented name-based id, computed independently of Spark."""
    return "name:" + hashlib.sha1(f"{artist.lower()}\x1f{track.lower()}".encode()).hexdigest()


def uri(path: Path) -> str:
    return "file:" + str(path)


def event(**fields: object) -> dict[str, object]:
    """A full reader row with every canonical field null unless given."""
    row: dict[str, object] = {name: None for name in CANONICAL_FIELDS}
    row.update(fields)
    return row


def rows_by_record(df, *record_nos: int) -> dict[int, dict[str, object]]:  # type: ignore[no-untyped-def]
    return {r[C.RECORD_NO]: r.asDict() for r in df.where(F.col(C.RECORD_NO).isin(list(record_nos))).collect()}


def canonical_all_null(row: dict[str, object]) -> bool:
    return all(row[name] is None for name in CANONICAL_FIELDS)


# -- Spotify account-data streaming history ------------------------------------------------------


def test_streaming_history_real_sample(spark: SparkSession) -> None:
    path = shared_data("spotify-account-export", "StreamingHistory0.json")
    df = read_events(spark, "spotify_streaming_history", str(path))
    assert df.schema == READER_SCHEMA
    got = rows_by_record(df, 1, 4, 10000, 10001)
    common = {C.SOURCE: "spotify_streaming_history", C.SOURCE_FILE: uri(path)}
    user = "export:spotify-account-export"
    assert got == {
        1: {
            **common,
            C.RECORD_NO: 1,
            C.RAW: '{"endTime":"2021-04-22 05:41","artistName":"Shindy","trackName":"Dreams","msPlayed":6408}',
            **event(
                user_id=user,
                track_id=name_id("Shindy", "Dreams"),
                track_name="Dreams",
                artist_name="Shindy",
                ts="2021-04-22T05:41:00Z",
                ms_played="6408",
            ),
        },
        4: {
            **common,
            C.RECORD_NO: 4,
            C.RAW: '{"endTime":"2021-04-22 05:48","artistName":"Trettmann","trackName":"Knöcheltief",'
            '"msPlayed":207519}',
            **event(
                user_id=user,
                track_id=name_id("Trettmann", "Knöcheltief"),
                track_name="Knöcheltief",
                artist_name="Trettmann",
                ts="2021-04-22T05:48:00Z",
                ms_played="207519",
            ),
        },
        10000: {
            **common,
            C.RECORD_NO: 10000,
            C.RAW: '{"endTime":"2021-06-21 12:29","artistName":"Nines","trackName":"Money on My Mind",'
            '"msPlayed":86960}',
            **event(
                user_id=user,
                track_id=name_id("Nines", "Money on My Mind"),
                track_name="Money on My Mind",
                artist_name="Nines",
                ts="2021-06-21T12:29:00Z",
                ms_played="86960",
            ),
        },
    }


def test_streaming_history_user_option_podcast_and_bad_ts(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "StreamingHistory0.json"
    path.write_text(
        json.dumps(
            [
                {"endTime": "2020-01-01 13:05", "artistName": "A", "trackName": "T", "msPlayed": 1000},
                {"endTime": "yesterday", "artistName": "Show", "trackName": "Episode 1", "msPlayed": 5},
            ],
            indent=2,
        )
    )
    df = read_events(spark, "spotify_streaming_history", str(path), user_id="alice")
    got = df.select(C.RECORD_NO, C.USER_ID, C.TRACK_ID, C.TS, C.MS_PLAYED)
    expected = spark.createDataFrame(
        [
            (1, "alice", name_id("A", "T"), "2020-01-01T13:05:00Z", "1000"),
            (2, "alice", name_id("Show", "Episode 1"), "yesterday", "5"),
        ],
        "record_no long, user_id string, track_id string, ts string, ms_played string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_streaming_history_rejects_csv(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "plays.csv"
    path.write_text("\nendTime,artistName\n2020-01-01 13:05,A\n")
    with pytest.raises(ReaderFormatError) as info:
        read_events(spark, "spotify_streaming_history", str(path))
    assert info.value.reader == "spotify_streaming_history"
    assert info.value.line_no == 2
    assert info.value.path == uri(path)


def test_streaming_history_rejects_other_json(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('[{"ts": "2020-01-01", "foo": 1}]')
    with pytest.raises(ReaderFormatError, match="endTime"):
        read_events(spark, "spotify_streaming_history", str(path))


def test_empty_file_gives_empty_frame_and_warning(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "StreamingHistory0.json"
    path.write_text("")
    with caplog.at_level(logging.WARNING, logger="spotrec.sources"):
        df = read_events(spark, "spotify_streaming_history", str(path))
    assert df.schema == READER_SCHEMA
    assert df.collect() == []
    assert "no records" in caplog.text


# -- Spotify extended streaming history ------------------------------------------------------------

IP = "203.0.113.77"
PERSONAL = {
    "username": "jane.doe.1987",
    "platform": "Android OS 12 API 31 (Google, Pixel 6)",
    "conn_country": "DE",
    "ip_addr": IP,
    "user_agent_decrypted": "unknown",
}


def _extended_record(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "ts": "2021-03-14T08:12:45Z",
        **PERSONAL,
        "ms_played": 201000,
        "master_metadata_track_name": "Dreams",
        "master_metadata_album_artist_name": "Shindy",
        "master_metadata_album_album_name": "Drama",
        "spotify_track_uri": "spotify:track:6rqhFgbbKwnb9MLmUQDhG6",
        "episode_name": None,
        "episode_show_name": None,
        "spotify_episode_uri": None,
        "reason_start": "clickrow",
        "reason_end": "trackdone",
        "shuffle": False,
        "skipped": None,
        "offline": False,
        "offline_timestamp": 1615709565,
        "incognito_mode": False,
    }
    base.update(fields)
    return base


def test_extended_history_keeps_personal_fields_out(spark: SparkSession, tmp_path: Path) -> None:
    folder = tmp_path / "jane"
    folder.mkdir()
    records = [
        _extended_record(),
        _extended_record(ts="2021-03-14T09:00:00Z", ms_played=3000, skipped=True, shuffle=True, reason_end="fwdbtn"),
        _extended_record(
            ts="2021-03-15T10:00:00Z",
            master_metadata_track_name=None,
            master_metadata_album_artist_name=None,
            master_metadata_album_album_name=None,
            spotify_track_uri=None,
            episode_name="Folge 1",
            episode_show_name="Gemischtes Hack",
            spotify_episode_uri="spotify:episode:4rOoJ6Egrf8K2IrywzwOMk",
        ),
    ]
    (folder / "Streaming_History_Audio_2021.json").write_text(json.dumps(records, indent=2))
    lines = folder / "Streaming_History_Audio_2022.jsonl"
    lines.write_text(
        json.dumps(_extended_record(ts="2022-01-01T00:00:00+01:00"))
        + "\n"
        + '{"ts": "2022", "ip_addr": "'
        + IP
        + '", broken\n'
    )
    df = read_events(spark, "spotify_extended", str(folder))
    assert df.schema == READER_SCHEMA
    rows = df.collect()
    for row in rows:
        for value in row:
            assert IP not in str(value)
            assert "jane.doe" not in str(value) and "Pixel" not in str(value)
    got = df.select(
        C.RECORD_NO,
        C.USER_ID,
        C.TRACK_ID,
        C.TRACK_NAME,
        C.ARTIST_NAME,
        C.ALBUM_NAME,
        C.TS,
        C.MS_PLAYED,
        C.REASON_START,
        C.REASON_END,
        C.SKIPPED,
        C.SHUFFLE,
    )
    u = "export:jane"
    expected = spark.createDataFrame(
        [
            (
                1,
                u,
                "6rqhFgbbKwnb9MLmUQDhG6",
                "Dreams",
                "Shindy",
                "Drama",
                "2021-03-14T08:12:45Z",
                "201000",
                "clickrow",
                "trackdone",
                None,
                "false",
            ),
            (
                2,
                u,
                "6rqhFgbbKwnb9MLmUQDhG6",
                "Dreams",
                "Shindy",
                "Drama",
                "2021-03-14T09:00:00Z",
                "3000",
                "clickrow",
                "fwdbtn",
                "true",
                "true",
            ),
            (
                3,
                u,
                "episode:4rOoJ6Egrf8K2IrywzwOMk",
                "Folge 1",
                "Gemischtes Hack",
                None,
                "2021-03-15T10:00:00Z",
                "201000",
                "clickrow",
                "trackdone",
                None,
                "false",
            ),
            (
                1,
                u,
                "6rqhFgbbKwnb9MLmUQDhG6",
                "Dreams",
                "Shindy",
                "Drama",
                "2021-12-31T23:00:00Z",
                "201000",
                "clickrow",
                "trackdone",
                None,
                "false",
            ),
            (2, None, None, None, None, None, None, None, None, None, None, None),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    first = next(r for r in rows if r[C.RECORD_NO] == 1 and r[C.SOURCE_FILE].endswith("2021.json"))
    assert json.loads(first[C.RAW]) == {
        "ts": "2021-03-14T08:12:45Z",
        "ms_played": "201000",
        "master_metadata_track_name": "Dreams",
        "master_metadata_album_artist_name": "Shindy",
        "master_metadata_album_album_name": "Drama",
        "spotify_track_uri": "spotify:track:6rqhFgbbKwnb9MLmUQDhG6",
        "episode_name": None,
        "episode_show_name": None,
        "spotify_episode_uri": None,
        "reason_start": "clickrow",
        "reason_end": "trackdone",
        "shuffle": "false",
        "skipped": None,
        "offline": "false",
        "offline_timestamp": "1615709565",
        "incognito_mode": "false",
    }
    broken = next(r for r in rows if r[C.RECORD_NO] == 2 and r[C.SOURCE_FILE].endswith(".jsonl"))
    assert broken[C.RAW] == '{"ts": "2022", "ip_addr":"<redacted>", broken'


# -- Spotify playlists -----------------------------------------------------------------------------


def test_spotify_playlists_real_sample(spark: SparkSession) -> None:
    path = shared_data("spotify-account-export", "Playlist1.json")
    read = read_playlists(spark, "spotify_playlist", str(path))
    assert read.playlists.schema == PLAYLISTS.schema
    assert read.tracks.schema == TRACKS.schema
    user = "export:spotify-account-export"
    key = f"{user}\x1fPlaylist1.json\x1f2022/04"
    pid = "spotify_playlist:" + hashlib.sha1(key.encode()).hexdigest()
    got = read.playlists.where(F.col(C.PLAYLIST_ID) == pid).where(F.col(C.POSITION) < 2)
    expected = spark.createDataFrame(
        [
            (pid, "2022/04", user, 0, "72LDoPEUyOXFWWZ2sxubwa", "spotify_playlist"),
            (pid, "2022/04", user, 1, "0MyOGiku0LkaoJHEheMJYA", "spotify_playlist"),
        ],
        PLAYLISTS.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    track = read.tracks.where(F.col(C.TRACK_ID) == "0MyOGiku0LkaoJHEheMJYA").collect()
    assert [(r.track_name, r.artist_name, r.album_name, r.source) for r in track] == [
        ("Can We Freestyle", "Skrapz", "80's Baby", "spotify_playlist")
    ]


def test_spotify_playlists_repeated_names_episodes_and_wrong_format(spark: SparkSession, tmp_path: Path) -> None:
    item = {"track": {"trackName": "T", "artistName": "A", "albumName": "B", "trackUri": "spotify:track:X1"}}
    episode = {"track": None, "episode": {"episodeName": "E", "showName": "S", "episodeUri": "spotify:episode:E1"}}
    doc = {"playlists": [{"name": "Mix", "items": [item, episode, {"track": None}]}, {"name": "Mix", "items": [item]}]}
    path = tmp_path / "Playlist1.json"
    path.write_text(json.dumps(doc))
    read = read_playlists(spark, "spotify_playlist", str(path), user_id="bob")

    def pid(suffix: str) -> str:
        return "spotify_playlist:" + hashlib.sha1(f"bob\x1fPlaylist1.json\x1fMix{suffix}".encode()).hexdigest()

    expected = spark.createDataFrame(
        [
            (pid(""), "Mix", "bob", 0, "X1", "spotify_playlist"),
            (pid(""), "Mix", "bob", 1, "episode:E1", "spotify_playlist"),
            (pid("\x1f1"), "Mix", "bob", 0, "X1", "spotify_playlist"),
        ],
        PLAYLISTS.schema,
    )
    assert_df_equality(read.playlists, expected, ignore_row_order=True, ignore_nullable=True)
    tracks = {r.track_id: (r.track_name, r.artist_name, r.album_name) for r in read.tracks.collect()}
    assert tracks == {"X1": ("T", "A", "B"), "episode:E1": ("E", "S", None)}

    bad = tmp_path / "bad" / "Playlist1.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps([{"endTime": "2020-01-01 10:00"}]))
    with pytest.raises(ReaderFormatError, match="playlists"):
        read_playlists(spark, "spotify_playlist", str(bad))


def test_mpd_slice(spark: SparkSession, tmp_path: Path) -> None:
    def track(pos: int, tid: str, name: str) -> dict[str, object]:
        return {
            "pos": pos,
            "artist_name": "Missy Elliott",
            "track_uri": f"spotify:track:{tid}",
            "artist_uri": "spotify:artist:2wIVse2owClT7go1WT98tk",
            "track_name": name,
            "album_uri": "spotify:album:6vV5UrXcfyQD1wu4Qo2I9K",
            "duration_ms": 226863,
            "album_name": "The Cookbook",
        }

    lose_control = track(0, "0UaMYEvWZi0ZqiDOoHU3YI", "Lose Control")
    doc = {
        "info": {"slice": "0-999", "version": "v1"},
        "playlists": [
            {"name": "Throwbacks", "pid": 0, "tracks": [lose_control, track(1, "6I9VzXrHxO9rA9A5euc8Ak", "Toxic")]},
            {"name": "Awesome Playlist", "pid": 1, "tracks": [track(0, "6I9VzXrHxO9rA9A5euc8Ak", "Toxic")]},
        ],
    }
    path = tmp_path / "mpd.slice.0-999.json"
    path.write_text(json.dumps(doc))
    read = read_playlists(spark, "spotify_mpd", str(path))
    expected = spark.createDataFrame(
        [
            ("mpd:0", "Throwbacks", None, 0, "0UaMYEvWZi0ZqiDOoHU3YI", "spotify_mpd"),
            ("mpd:0", "Throwbacks", None, 1, "6I9VzXrHxO9rA9A5euc8Ak", "spotify_mpd"),
            ("mpd:1", "Awesome Playlist", None, 0, "6I9VzXrHxO9rA9A5euc8Ak", "spotify_mpd"),
        ],
        PLAYLISTS.schema,
    )
    assert_df_equality(read.playlists, expected, ignore_row_order=True, ignore_nullable=True)
    toxic = read.tracks.where(F.col(C.TRACK_ID) == "6I9VzXrHxO9rA9A5euc8Ak").collect()
    assert [(r.track_name, r.artist_id, r.album_id, r.duration_ms) for r in toxic] == [
        ("Toxic", "2wIVse2owClT7go1WT98tk", "6vV5UrXcfyQD1wu4Qo2I9K", 226863)
    ]


# -- Last.fm 1K and HetRec -------------------------------------------------------------------------


def test_lastfm_1k_real_sample(spark: SparkSession) -> None:
    path = shared_data("lastfm-1k-sample", "userid-timestamp-artid-artname-traid-traname.tsv")
    df = read_events(spark, "lastfm_1k", str(path))
    assert df.schema == READER_SCHEMA
    got = rows_by_record(df, 1, 11, 4998, 5001)
    assert sorted(got) == [1, 11, 4998]
    assert got[1] == {
        C.SOURCE: "lastfm_1k",
        C.SOURCE_FILE: uri(path),
        C.RECORD_NO: 1,
        C.RAW: "user_000001\t2009-05-04T23:08:57Z\tf1b1cf71-bd35-4e99-8624-24a6e15f133a\tDeep Dish\t\t"
        "Fuck Me Im Famous (Pacha Ibiza)-09-28-2007",
        **event(
            user_id="user_000001",
            track_id=name_id("Deep Dish", "Fuck Me Im Famous (Pacha Ibiza)-09-28-2007"),
            track_name="Fuck Me Im Famous (Pacha Ibiza)-09-28-2007",
            artist_name="Deep Dish",
            ts="2009-05-04T23:08:57Z",
            context_type="lastfm",
        ),
    }
    assert (got[11][C.TRACK_ID], got[11][C.ARTIST_NAME], got[11][C.TRACK_NAME]) == (
        "f7c1f8f8-b935-45ed-8fc8-7def69d92a10",
        "坂本龍一",
        "The Last Emperor (Theme)",
    )
    assert (got[4998][C.USER_ID], got[4998][C.TS], got[4998][C.TRACK_ID]) == (
        "user_000002",
        "2008-12-08T06:11:16Z",
        "6790b616-7925-4741-b030-01958cf4e51d",
    )


def test_lastfm_1k_malformed_line_and_wrong_format(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "plays.tsv"
    path.write_text(
        "u1\t2009-05-04T23:08:57Z\t\tArtist\t\tSong\n"
        "u1\tonly three\tfields\n"
        "\n"
        "u2\tnot-a-time\tmb-a\tArtist\tmb-t\tSong\n"
    )
    df = read_events(spark, "lastfm_1k", str(path))
    got = df.select(C.RECORD_NO, C.RAW, C.USER_ID, C.TRACK_ID, C.TS, C.CONTEXT_TYPE)
    expected = spark.createDataFrame(
        [
            (
                1,
                "u1\t2009-05-04T23:08:57Z\t\tArtist\t\tSong",
                "u1",
                name_id("Artist", "Song"),
                "2009-05-04T23:08:57Z",
                "lastfm",
            ),
            (2, "u1\tonly three\tfields", None, None, None, None),
            (4, "u2\tnot-a-time\tmb-a\tArtist\tmb-t\tSong", "u2", "mb-t", "not-a-time", "lastfm"),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    assert canonical_all_null(df.where(F.col(C.RECORD_NO) == 2).first().asDict())  # type: ignore[union-attr]

    wrong = tmp_path / "x.json"
    wrong.write_text('{"user": "u1", "ts": "2009-05-04T23:08:57Z"}\n')
    with pytest.raises(ReaderFormatError) as info:
        read_events(spark, "lastfm_1k", str(wrong))
    assert (info.value.reader, info.value.line_no) == ("lastfm_1k", 1)


def test_hetrec_real_sample(spark: SparkSession) -> None:
    path = shared_data("lastfm-hetrec-2k", "user_artists.dat")
    df = read_play_counts(spark, "hetrec", str(path))
    assert df.schema == PLAY_COUNTS.schema
    wanted = [("hetrec:2", "artist:51"), ("hetrec:2", "artist:52"), ("hetrec:2100", "artist:18730")]
    got = df.where(F.concat_ws("|", C.USER_ID, C.TRACK_ID).isin([f"{u}|{t}" for u, t in wanted]))
    # The last line of the file (CRLF like the rest) is read whole.
    expected = spark.createDataFrame(
        [
            ("hetrec:2", "artist:51", 13883, "hetrec"),
            ("hetrec:2", "artist:52", 11690, "hetrec"),
            ("hetrec:2100", "artist:18730", 263, "hetrec"),
        ],
        PLAY_COUNTS.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


# -- MSSD ------------------------------------------------------------------------------------------


def test_mssd_real_sample(spark: SparkSession) -> None:
    path = shared_data("mssd-sample", "log_sample.csv")
    df = read_events(spark, "mssd", str(path))
    assert df.schema == READER_SCHEMA
    got = rows_by_record(df, 1, 2, 8, 202)
    assert sorted(got) == [2, 8, 202]  # line 1 is the header
    s1 = "0_00006f66-33e5-4de7-a324-2d18e439fc1e"
    assert got[2] == {
        C.SOURCE: "mssd",
        C.SOURCE_FILE: uri(path),
        C.RECORD_NO: 2,
        C.RAW: f"{s1},1,20,t_0479f24c-27d2-46d6-a00c-7ec928f2b539,False,False,False,True,0,0,0,0,0,0,True,16,"
        "15-07-18,True,editorial_playlist,trackdone,trackdone",
        **event(
            event_id=f"{s1}:1",
            user_id=f"mssd:{s1}",
            track_id="t_0479f24c-27d2-46d6-a00c-7ec928f2b539",
            ts="2018-07-15T00:00:00Z",
            context_type="editorial_playlist",
            reason_start="trackdone",
            reason_end="trackdone",
            skipped="false",
            shuffle="true",
            session_id=s1,
            session_position="1",
        ),
    }
    assert {k: got[8][k] for k in (C.EVENT_ID, C.TRACK_ID, C.SKIPPED, C.SHUFFLE, C.REASON_END)} == {
        C.EVENT_ID: f"{s1}:7",
        C.TRACK_ID: "t_e23c19f5-4c32-4557-aa44-81372c2e3705",
        C.SKIPPED: "true",
        C.SHUFFLE: "true",
        C.REASON_END: "fwdbtn",
    }
    s2 = "0_0003e8a0-ea43-47fe-ac5a-8b502f4d38ef"
    assert {k: got[202][k] for k in (C.EVENT_ID, C.CONTEXT_TYPE, C.SKIPPED, C.SHUFFLE, C.REASON_START)} == {
        C.EVENT_ID: f"{s2}:20",
        C.CONTEXT_TYPE: "radio",
        C.SKIPPED: "true",
        C.SHUFFLE: "false",
        C.REASON_START: "backbtn",
    }


MSSD_19 = (
    "session_id,session_position,session_length,track_id_clean,skip_1,skip_2,skip_3,not_skipped,context_switch,"
    "no_pause_before_play,short_pause_before_play,long_pause_before_play,hist_user_behavior_n_seekfwd,"
    "hist_user_behavior_n_seekback,hist_user_behavior_is_shuffle,hour_of_day,date,premium,context_type"
)


def test_mssd_short_header_with_21_value_rows(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "log_0.csv"
    path.write_text(
        MSSD_19 + "\n"
        "s1,1,2,t_a,True,True,True,False,0,1,0,0,0,0,False,11,2018-07-15,True,radio,clickrow,fwdbtn\n"
        "s1,2,2,t_b,False,False,False,True,0,1,0,0,0,0,False,11,15-07-18,True,radio\n"
        "s1,3,only,four\n"
    )
    df = read_events(spark, "mssd", str(path))
    got = df.select(C.RECORD_NO, C.EVENT_ID, C.TRACK_ID, C.TS, C.SKIPPED, C.REASON_START, C.REASON_END)
    expected = spark.createDataFrame(
        [
            (2, "s1:1", "t_a", "2018-07-15T00:00:00Z", "true", "clickrow", "fwdbtn"),
            (3, "s1:2", "t_b", "2018-07-15T00:00:00Z", "false", None, None),
            (4, None, None, None, None, None, None),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)

    wrong = tmp_path / "other.csv"
    wrong.write_text("user,track\nu,t\n")
    with pytest.raises(ReaderFormatError, match="session_id"):
        read_events(spark, "mssd", str(wrong))


TF_HEADER = (
    "track_id,duration,release_year,us_popularity_estimate,acousticness,beat_strength,bounciness,danceability,"
    "dyn_range_mean,energy,flatness,instrumentalness,key,liveness,loudness,mechanism,mode,organism,speechiness,"
    "tempo,time_signature,valence," + ",".join(f"acoustic_vector_{i}" for i in range(8))
)


def test_mssd_track_features(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "tf_mini.csv"
    path.write_text(
        TF_HEADER + "\n"
        "t_a,180.0666656494141,1950,99.97,0.458,0.519,0.504,0.399,7.51,0.817,1.0,0.0,0,0.0,-11.8,0.54,major,"
        "0.45,0.02,166.1,3,0.36,-0.8,0.1,0.2,0.3,0.4,0.5,0.6,0.7\n"
        "t_b,236.8,1950,99.9,0.9,0.5,0.5,0.6,7,0.3,1,0,1,0.1,-9,0.5,minor,0.6,0.05,120,4,0.7,1,2,3,4,5,6,7,8\n"
    )
    df = read_track_features(spark, "mssd_track_features", str(path), with_acoustic_vector=True)
    expected = spark.createDataFrame(
        [
            (
                "t_a",
                None,
                None,
                None,
                None,
                None,
                180067,
                0.458,
                0.399,
                0.817,
                0.36,
                166.1,
                "mssd",
                [-0.8, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
            ),
            (
                "t_b",
                None,
                None,
                None,
                None,
                None,
                236800,
                0.9,
                0.6,
                0.3,
                0.7,
                120.0,
                "mssd",
                [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            ),
        ],
        T.StructType([*TRACKS.schema.fields, T.StructField("acoustic_vector", T.ArrayType(T.DoubleType()))]),
    )
    assert_df_equality(df, expected, ignore_row_order=True, ignore_nullable=True)
    plain = read_track_features(spark, "mssd_track_features", str(path))
    assert plain.schema == TRACKS.schema


# -- Yes.com ---------------------------------------------------------------------------------------


def test_yes_real_sample(spark: SparkSession) -> None:
    path = shared_data("yes-playlists", "yes_small", "train.txt")
    read = read_playlists(spark, "yes", str(path))
    assert read.playlists.schema == PLAYLISTS.schema
    first = read.playlists.where(F.col(C.PLAYLIST_ID).isin("yes:train:1", "yes:train:2", "yes:train:3"))
    expected = spark.createDataFrame(
        [("yes:train:3", None, None, i, f"yes:{i}", "yes") for i in range(9)], PLAYLISTS.schema
    )
    assert_df_equality(first, expected, ignore_row_order=True, ignore_nullable=True)
    songs = read.tracks.where(F.col(C.TRACK_ID).isin("yes:0", "yes:3167")).select(
        C.TRACK_ID, C.TRACK_NAME, C.ARTIST_NAME, C.SOURCE
    )
    last = Path(path).with_name("song_hash.txt").read_text().splitlines()[-1].split("\t")
    expected_songs = spark.createDataFrame(
        [
            ("yes:0", "Gucci Time (w/ Swizz Beatz)", "Gucci Mane", "yes"),
            ("yes:3167", last[1].replace("\\/", "/"), last[2], "yes"),
        ],
        songs.schema,
    )
    assert_df_equality(songs, expected_songs, ignore_row_order=True, ignore_nullable=True)


# -- generic ---------------------------------------------------------------------------------------


def test_generic_csv_mapping_quotes_and_malformed(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "plays.csv"
    path.write_text(
        "listener,song,when,played\n"
        'u1,"Song, with comma",2021-01-01T10:00:00+02:00,1000\n'
        'u2,"He said ""hi""",2021-01-01 10:00:00,\n'
        "u3,too,many,fields,here\n"
    )
    mapping = {C.USER_ID: "listener", C.TRACK_ID: "song", C.TS: "when", C.MS_PLAYED: "played"}
    df = read_events(spark, "generic_csv", str(path), mapping=mapping, source="my_csv")
    assert df.schema == READER_SCHEMA
    got = df.select(C.SOURCE, C.RECORD_NO, C.USER_ID, C.TRACK_ID, C.TS, C.MS_PLAYED, C.ARTIST_NAME)
    expected = spark.createDataFrame(
        [
            ("my_csv", 2, "u1", "Song, with comma", "2021-01-01T08:00:00Z", "1000", None),
            ("my_csv", 3, "u2", 'He said "hi"', "2021-01-01T10:00:00Z", None, None),
            ("my_csv", 4, None, None, None, None, None),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)

    with pytest.raises(ReaderFormatError, match="nope"):
        read_events(spark, "generic_csv", str(path), mapping={**mapping, C.TS: "nope"})
    with pytest.raises(ConfigError, match="colour"):
        read_events(spark, "generic_csv", str(path), mapping={**mapping, "colour": "song"})


def test_generic_jsonl_identity_mapping_and_name_ids(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "plays.jsonl"
    path.write_text(
        '{"user_id": "u1", "artist_name": "A", "track_name": "T", "ts": "2021-01-01T10:00:00Z", "skipped": true}\n'
        "not json\n"
    )
    df = read_events(spark, "generic_jsonl", str(path))
    got = df.select(C.SOURCE, C.RECORD_NO, C.RAW, C.USER_ID, C.TRACK_ID, C.TS, C.SKIPPED)
    expected = spark.createDataFrame(
        [
            (
                "generic_jsonl",
                1,
                path.read_text().splitlines()[0],
                "u1",
                name_id("A", "T"),
                "2021-01-01T10:00:00Z",
                "true",
            ),
            ("generic_jsonl", 2, "not json", None, None, None, None),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_generic_parquet_canonical_columns(spark: SparkSession, tmp_path: Path) -> None:
    folder = tmp_path / "synthetic"
    spark.createDataFrame(
        [("u1", "t1", 1609495200, 1000, True), ("u2", "t2", 1609498800, 2000, None)],
        "user_id string, track_id string, secs long, ms_played long, skipped boolean",
    ).select("user_id", "track_id", F.timestamp_seconds("secs").alias("ts"), "ms_played", "skipped").coalesce(
        1
    ).write.parquet(str(folder))
    df = read_events(spark, "generic_parquet", str(folder), source="synthetic")
    assert df.schema == READER_SCHEMA
    got = df.select(C.SOURCE, C.RECORD_NO, C.USER_ID, C.TRACK_ID, C.TS, C.MS_PLAYED, C.SKIPPED, C.EVENT_ID)
    expected = spark.createDataFrame(
        [
            ("synthetic", 1, "u1", "t1", "2021-01-01T10:00:00Z", "1000", "true", None),
            ("synthetic", 2, "u2", "t2", "2021-01-01T11:00:00Z", "2000", None, None),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    raw = json.loads(df.where(F.col(C.RECORD_NO) == 1).first()[C.RAW])  # type: ignore[index]
    assert raw == {
        "user_id": "u1",
        "track_id": "t1",
        "ts": "2021-01-01T10:00:00.000000Z",
        "ms_played": 1000,
        "skipped": True,
    }


# -- shared machinery ------------------------------------------------------------------------------


def test_iso_utc_shapes(spark: SparkSession) -> None:
    cases = [
        ("2020-01-01 13:05", "2020-01-01T13:05:00Z"),
        ("2009-05-04T23:08:57Z", "2009-05-04T23:08:57Z"),
        ("2021-03-14T08:12:45.5+02:00", "2021-03-14T06:12:45.500000Z"),
        ("2018-07-15", "2018-07-15T00:00:00Z"),
        ("2021-02-30 10:00", "2021-02-30 10:00"),
        ("15-07-18", "15-07-18"),
        (None, None),
    ]
    df = spark.createDataFrame(cases, "s string, expected string")
    got = df.select("s", iso_utc(F.col("s")).alias("expected"))
    assert_df_equality(got, df, ignore_row_order=True, ignore_nullable=True)


def test_line_numbers_across_file_blocks(spark: SparkSession, tmp_path: Path) -> None:
    """Files split into several scan partitions still number their lines 1..n."""
    lines_a = [f"a{i:03d}" + "x" * 20 for i in range(1, 41)]
    (tmp_path / "a.txt").write_text("\n".join(lines_a) + "\n")
    (tmp_path / "b.txt").write_text("\n\nb3\n")
    old = spark.conf.get("spark.sql.files.maxPartitionBytes") or "128MB"
    spark.conf.set("spark.sql.files.maxPartitionBytes", "128")
    try:
        numbered = numbered_lines(spark, str(tmp_path), "test")
        got = {(r[C.SOURCE_FILE].rsplit("/", 1)[-1], r[C.RECORD_NO], r["line"]) for r in numbered.lines.collect()}
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", old)
    # A new query over the lines plans its scan with other splits than the numbering pass saw:
    # refused, never misnumbered.
    with pytest.raises(Exception, match="file splits changed"):
        numbered.lines.select(C.RECORD_NO).collect()
    expected = {("a.txt", i + 1, text) for i, text in enumerate(lines_a)} | {
        ("b.txt", 1, ""),
        ("b.txt", 2, ""),
        ("b.txt", 3, "b3"),
    }
    assert got == expected
    assert numbered.heads[uri(tmp_path / "b.txt")].record_no == 3


def test_registry_and_unknown_format(spark: SparkSession, tmp_path: Path) -> None:
    assert set(EVENT_READERS) == {
        "spotify_streaming_history",
        "spotify_extended",
        "lastfm_1k",
        "mssd",
        "generic_csv",
        "generic_parquet",
        "generic_jsonl",
    }
    with pytest.raises(ReaderFormatError, match="known formats: generic_csv, generic_jsonl"):
        read_events(spark, "napster", str(tmp_path))
    with pytest.raises(ReaderFormatError, match="no file matches"):
        read_events(spark, "lastfm_1k", str(tmp_path / "missing.tsv"))
