"""Real data as people have it: export folders and zips, podcasts in a history, CSV dialects, play
counts and playlists from plain files. Every file here is written by the test in its real shape."""

import json
import zipfile
from pathlib import Path

import pytest

from spotrec import columns as C
from spotrec.config import SourceSpec
from spotrec.errors import ReaderFormatError
from spotrec.sources.files import select_inputs
from spotrec.steps.ingest import run_ingest
from spotrec.storage import Storage
from spotrec.tables import BRONZE_EVENTS, INGEST_LOG, SILVER_EVENTS, TRACKS


def _extended(ts: str, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "ts": ts,
        "username": "someone",
        "platform": "android",
        "ms_played": 200000,
        "conn_country": "DE",
        "ip_addr": "192.0.2.10",
        "master_metadata_track_name": "Song",
        "master_metadata_album_artist_name": "Artist",
        "master_metadata_album_album_name": "Album",
        "spotify_track_uri": "spotify:track:T1",
        "episode_name": None,
        "episode_show_name": None,
        "spotify_episode_uri": None,
        "reason_start": "trackdone",
        "reason_end": "trackdone",
        "shuffle": False,
        "skipped": False,
        "offline": False,
        "offline_timestamp": None,
        "incognito_mode": False,
    }
    row.update(kw)
    return row


PLAYS = [
    _extended("2023-05-01T10:00:00Z"),
    _extended("2023-05-01T10:04:00Z", spotify_track_uri="spotify:track:T2", master_metadata_track_name="Other"),
    _extended(
        "2023-05-01T11:00:00Z",
        spotify_track_uri=None,
        master_metadata_track_name=None,
        master_metadata_album_artist_name=None,
        master_metadata_album_album_name=None,
        episode_name="Episode 12",
        episode_show_name="A Show",
        spotify_episode_uri="spotify:episode:E12",
    ),
]


def _extended_folder(folder: Path) -> Path:
    """A folder as Spotify ships the extended history: audio JSON, video JSON and a PDF read-me."""
    folder.mkdir(parents=True)
    (folder / "Streaming_History_Audio_2023.json").write_text(json.dumps(PLAYS, indent=1))
    (folder / "Streaming_History_Video_2023.json").write_text(json.dumps([_extended("2023-05-02T10:00:00Z")]))
    (folder / "ReadMeFirst_ExtendedStreamingHistory.pdf").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
    return folder


def _lines(say_into: list[str]):
    return say_into.append


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
def test_extended_folder_takes_audio_and_says_what_it_skipped(spark, storage: Storage, config, tmp_path):
    folder = _extended_folder(tmp_path / "Spotify Extended Streaming History")
    said: list[str] = []
    src = [SourceSpec(kind="events", format="spotify_extended", path=str(folder), options={"user_id": "me"})]

    counts = run_ingest(spark, storage, config, "r1", src, say=said.append)

    skipped = next(line for line in said if "skipped" in line)
    assert "skipped 2 file(s)" in skipped
    assert "ReadMeFirst_ExtendedStreamingHistory.pdf (Spotify's read-me document)" in skipped
    assert "Streaming_History_Video_2023.json (video history, not music)" in skipped
    assert (counts.read, counts.silver_new, counts.quarantined, counts.duplicates, counts.excluded) == (3, 2, 0, 0, 1)
    assert "1 excluded (excluded: podcast 1)" in said[-1]
    silver = {r[C.TRACK_ID] for r in storage.read(SILVER_EVENTS).collect()}
    assert silver == {"T1", "T2"}
    assert storage.read(BRONZE_EVENTS).count() == 3  # the episode stays in bronze
    assert "episode:E12" not in {r[C.TRACK_ID] for r in storage.read(TRACKS).collect()}
    logged = storage.read(INGEST_LOG).collect()
    assert [(r[C.ROWS_READ], r[C.SILVER_NEW], r[C.QUARANTINED], r[C.DUPLICATES], r[C.EXCLUDED]) for r in logged] == [
        (3, 2, 0, 0, 1)
    ]

    again = run_ingest(spark, storage, config, "r2", src, say=said.append)
    assert (again.read, again.silver_new, again.quarantined, again.duplicates, again.excluded) == (3, 0, 0, 2, 1)
    assert again.read == again.silver_new + again.quarantined + again.duplicates + again.excluded


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
def test_content_all_keeps_podcasts_as_items(spark, storage: Storage, config, tmp_path):
    folder = _extended_folder(tmp_path / "export")
    config.ingest.content = "all"
    src = [SourceSpec(kind="events", format="spotify_extended", path=str(folder), options={"user_id": "me"})]
    counts = run_ingest(spark, storage, config, "r1", src, say=lambda _line: None)
    assert (counts.silver_new, counts.excluded) == (3, 0)
    assert "episode:E12" in {r[C.TRACK_ID] for r in storage.read(SILVER_EVENTS).collect()}


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
def test_spotify_zip_with_nested_folders_is_read_without_unpacking_by_hand(spark, storage: Storage, config, tmp_path):
    archive = tmp_path / "my_spotify_data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Spotify Extended Streaming History/Streaming_History_Audio_2023.json", json.dumps(PLAYS))
        zf.writestr("Spotify Extended Streaming History/ReadMeFirst_ExtendedStreamingHistory.pdf", b"%PDF-1.4\n")
        zf.writestr("Spotify Account Data/StreamingHistory_music_0.json", json.dumps([]))
    said: list[str] = []
    src = [SourceSpec(kind="events", format="spotify_extended", path=str(archive), options={"user_id": "me"})]
    counts = run_ingest(spark, storage, config, "r1", src, say=said.append)
    assert (counts.read, counts.silver_new, counts.excluded) == (3, 2, 1)
    assert any("skipped 2 file(s)" in line for line in said)
    # unpacked once, under the artifacts folder, into a folder named by the zip's content
    unpacked = list((Path(config.storage.artifacts_dir) / "ingest" / "unzipped").iterdir())
    assert len(unpacked) == 1
    again = run_ingest(spark, storage, config, "r2", src, say=said.append)
    assert (again.silver_new, again.duplicates) == (0, 2)
    assert len(list((Path(config.storage.artifacts_dir) / "ingest" / "unzipped").iterdir())) == 1


def test_basic_export_zip_takes_history_and_playlists_by_name(tmp_path):
    archive = tmp_path / "my_spotify_data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("StreamingHistory_music_0.json", "StreamingHistory_podcast_0.json", "Playlist1.json"):
            zf.writestr(f"MyData/{name}", "[]")
        zf.writestr("MyData/Userdata.json", "{}")
    history = select_inputs("spotify_streaming_history", str(archive), work_dir=str(tmp_path / "w"))
    assert [Path(p).name for p in history.paths] == ["StreamingHistory_music_0.json"]
    assert ("MyData/StreamingHistory_podcast_0.json", "podcast history, not music") in history.skipped
    lists = select_inputs("spotify_playlist", str(archive), work_dir=str(tmp_path / "w"))
    assert [Path(p).name for p in lists.paths] == ["Playlist1.json"]


def test_folder_without_a_file_of_the_format_says_what_it_holds(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "ReadMeFirst.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(ReaderFormatError, match=r"it holds ReadMeFirst\.pdf"):
        select_inputs("spotify_extended", str(tmp_path / "d"), work_dir=str(tmp_path / "w"))


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
def test_basic_export_marks_split_podcast_rows_as_episodes(spark, storage: Storage, config, tmp_path):
    folder = tmp_path / "MyData"
    folder.mkdir()
    rows = [
        {"endTime": "2023-05-01 10:00", "artistName": "A", "trackName": "S", "msPlayed": 200000},
        {"endTime": "2023-05-01 11:00", "podcastName": "Show", "episodeName": "Ep 1", "msPlayed": 900000},
    ]
    (folder / "StreamingHistory_music_0.json").write_text(json.dumps(rows))
    src = [SourceSpec(kind="events", format="spotify_streaming_history", path=str(folder))]
    counts = run_ingest(spark, storage, config, "r1", src, say=lambda _line: None)
    assert (counts.read, counts.silver_new, counts.excluded, counts.excluded_by_kind) == (2, 1, 1, {"podcast": 1})


# -- CSV dialects (generic_csv through Spark's CSV parser) ---------------------------------------------

MAPPING = {C.USER_ID: "user_id", C.ARTIST_NAME: "artistname", C.TRACK_NAME: "trackname", C.TS: "ts"}


def _csv_rows(spark, path: Path, **options):
    from spotrec.sources import read_events

    df = read_events(spark, "generic_csv", str(path), mapping=MAPPING, **options)
    return sorted((r[C.RECORD_NO], r[C.USER_ID], r[C.ARTIST_NAME], r[C.TRACK_NAME], r[C.TS]) for r in df.collect())


TS = "2023-05-01T10:00:00Z"


@pytest.mark.parametrize(
    ("name", "content", "options"),
    [
        (
            "quoted header, blanks after commas",
            '"user_id", "artistname", "trackname", "ts"\n"u1", "Björk", "Jóga", "2023-05-01T10:00:00Z"\n',
            {},
        ),
        ("BOM", "\ufeffuser_id,artistname,trackname,ts\nu1,Björk,Jóga,2023-05-01T10:00:00Z\n", {}),
        ("semicolons", "user_id;artistname;trackname;ts\nu1;Björk;Jóga;2023-05-01T10:00:00Z\n", {}),
        ("tabs", "user_id\tartistname\ttrackname\tts\nu1\tBjörk\tJóga\t2023-05-01T10:00:00Z\n", {}),
        ("CRLF", "user_id,artistname,trackname,ts\r\nu1,Björk,Jóga,2023-05-01T10:00:00Z\r\n", {}),
    ],
)
def test_csv_dialects(spark, tmp_path, name, content, options):
    path = tmp_path / "plays.csv"
    path.write_bytes(content.encode("utf-8"))
    assert _csv_rows(spark, path, **options) == [(2, "u1", "Björk", "Jóga", TS)], name


def test_csv_quoted_field_with_embedded_newline(spark, tmp_path):
    path = tmp_path / "plays.csv"
    path.write_text(
        'user_id,artistname,trackname,ts\nu1,"Sufjan Stevens","Chicago\n(Acoustic)",2023-05-01T10:00:00Z\n'
        'u2,"A ""quoted"" name",Song,2023-05-01T10:00:00Z\n'
    )
    assert _csv_rows(spark, path, multiline=True) == [
        (2, "u1", "Sufjan Stevens", "Chicago\n(Acoustic)", TS),
        (4, "u2", 'A "quoted" name', "Song", TS),
    ]


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
def test_csv_malformed_line_is_quarantined_with_its_line_number(spark, storage: Storage, config, tmp_path):
    path = tmp_path / "plays.csv"
    path.write_text(
        "user_id,artistname,trackname,ts\n"
        "u1,A,S1,2023-05-01T10:00:00Z\n"
        "u1,A,S2\n"  # a field short
        "u1,A,S3,2023-05-01T11:00:00Z\n"
    )
    src = [SourceSpec(kind="events", format="generic_csv", path=str(path), options={"mapping": MAPPING})]
    counts = run_ingest(spark, storage, config, "r1", src, say=lambda _line: None)
    assert (counts.read, counts.silver_new, counts.quarantined) == (3, 2, 1)
    from spotrec.tables import QUARANTINE

    assert [(r[C.RECORD_NO], r[C.REASON], r[C.RAW]) for r in storage.read(QUARANTINE).collect()] == [
        (3, "malformed_record", "u1,A,S2")
    ]


# -- play counts and playlists from plain files -------------------------------------------------------


def test_taste_profile_triplets_and_hetrec_counts(spark, tmp_path):
    from spotrec.sources import read_play_counts

    triplets = tmp_path / "train_triplets.txt"
    triplets.write_text(
        "b80344d063b5ccb3212f76538f3d9e43d87dca9e\tSOAKIMP12A8C130995\t1\n"
        "b80344d063b5ccb3212f76538f3d9e43d87dca9e\tSOAPDEY12A81C210A9\t2\n"
        "85c1f87fea955d09b4bec2e36aee110927aab14f\tSOAKIMP12A8C130995\t5\n"
    )
    got = read_play_counts(spark, "generic_play_counts", str(triplets), user_prefix="tp:").collect()
    assert sorted((r[C.USER_ID], r[C.TRACK_ID], r[C.PLAY_COUNT]) for r in got) == [
        ("tp:85c1f87fea955d09b4bec2e36aee110927aab14f", "SOAKIMP12A8C130995", 5),
        ("tp:b80344d063b5ccb3212f76538f3d9e43d87dca9e", "SOAKIMP12A8C130995", 1),
        ("tp:b80344d063b5ccb3212f76538f3d9e43d87dca9e", "SOAPDEY12A81C210A9", 2),
    ]
    hetrec = tmp_path / "user_artists.dat"
    hetrec.write_bytes(b"userID\tartistID\tweight\r\n2\t51\t13883\r\n2\t52\t11690\r\n")
    mapping = {C.USER_ID: "userID", C.TRACK_ID: "artistID", C.PLAY_COUNT: "weight"}
    got = read_play_counts(
        spark, "generic_play_counts", str(hetrec), mapping=mapping, user_prefix="hetrec:", item_prefix="artist:"
    ).collect()
    assert sorted((r[C.USER_ID], r[C.TRACK_ID], r[C.PLAY_COUNT]) for r in got) == [
        ("hetrec:2", "artist:51", 13883),
        ("hetrec:2", "artist:52", 11690),
    ]


def test_csv_playlists_with_names_and_file_order(spark, tmp_path):
    from spotrec.sources import name_track_id, read_playlists

    path = tmp_path / "playlists.csv"
    path.write_text(
        '"user_id", "artistname", "trackname", "playlistname"\n'
        '"9cc0cfd4d7d7885102480dd99e7a90d6","Elvis Costello","(The Angels Wanna Wear My) Red Shoes","HARD ROCK 2010"\n'
        '"9cc0cfd4d7d7885102480dd99e7a90d6","Lissie","All Be Okay","HARD ROCK 2010"\n'
        '"9cc0cfd4d7d7885102480dd99e7a90d6","Elvis Costello","Alison","IOW 2012"\n'
    )
    mapping = {
        C.USER_ID: "user_id",
        C.ARTIST_NAME: "artistname",
        C.TRACK_NAME: "trackname",
        C.PLAYLIST_NAME: "playlistname",
    }
    read = read_playlists(spark, "generic_playlists", str(path), mapping=mapping)
    rows = sorted((r[C.PLAYLIST_NAME], r[C.POSITION], r[C.TRACK_ID]) for r in read.playlists.collect())
    from pyspark.sql import functions as F

    ids = {
        r[0]: r[1]
        for r in spark.createDataFrame([("Lissie", "All Be Okay"), ("Elvis Costello", "Alison")], "a string, t string")
        .select("t", name_track_id(F.col("a"), F.col("t")))
        .collect()
    }
    assert [(n, p) for n, p, _ in rows] == [("HARD ROCK 2010", 0), ("HARD ROCK 2010", 1), ("IOW 2012", 0)]
    assert rows[1][2] == ids["All Be Okay"] and rows[2][2] == ids["Alison"]
    assert {r[C.ARTIST_NAME] for r in read.tracks.collect()} == {"Elvis Costello", "Lissie"}


def test_jsonl_playlists_with_positions(spark, tmp_path):
    from spotrec.sources import read_playlists

    path = tmp_path / "lists.jsonl"
    path.write_text(
        '{"owner": "u1", "list": "p1", "pos": 1, "song": "T2"}\n{"owner": "u1", "list": "p1", "pos": 0, "song": "T1"}\n'
    )
    mapping = {C.USER_ID: "owner", C.PLAYLIST_ID: "list", C.POSITION: "pos", C.TRACK_ID: "song"}
    read = read_playlists(spark, "generic_playlists", str(path), mapping=mapping)
    assert sorted((r[C.PLAYLIST_ID], r[C.USER_ID], r[C.POSITION], r[C.TRACK_ID]) for r in read.playlists.collect()) == [
        ("p1", "u1", 0, "T1"),
        ("p1", "u1", 1, "T2"),
    ]


# -- the whole pipeline on what a user has (slow: every step) -----------------------------------------

TINY = [
    "tracking.enabled=false",
    "weekly.max_iter=2",
    "weekly.playlist_size=5",
    "weekly.taste_clusters=2",
    "weekly.num_blocks=1",
    "rnn.vector_size=8",
    "rnn.hidden_size=8",
    "rnn.rnn_epochs=1",
    "rnn.softmax_samples=16",
    "rnn.n_trees=2",
    "rl.episodes=20",
    "rl.eval_sessions=5",
    "rl.learning_starts=5",
    "rl.user_model_max_epochs=2",
    "rl.training_users=5",
]


def _pipeline(tmp_path: Path, sources: list[dict], capsys) -> str:
    """``spotrec pipeline --skip generate`` on ``sources`` (an ingest.sources YAML); returns what it printed."""
    import yaml

    from spotrec.cli import main

    conf = tmp_path / "conf.yaml"
    root = tmp_path / "wh"
    conf.write_text(
        yaml.safe_dump(
            {
                "storage": {
                    "root": str(root),
                    "raw_dir": str(tmp_path / "raw"),
                    "checkpoint_dir": str(root / "_checkpoints"),
                    "artifacts_dir": str(root / "_artifacts"),
                },
                "ingest": {"sources": sources},
            }
        )
    )
    args = ["pipeline", "--config", str(conf), "--skip", "generate"]
    for s in TINY:
        args += ["--set", s]
    assert main(args) == 0
    return capsys.readouterr().out


def _step_lines(out: str, step: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(f"[{step}]")]


@pytest.mark.slow
def test_pipeline_on_one_listeners_export(tmp_path, capsys):
    from tests.conftest import shared_data

    export = shared_data("spotify-account-export")
    out = _pipeline(
        tmp_path,
        [
            {"kind": "events", "format": "spotify_streaming_history", "path": str(export)},
            {"kind": "playlists", "format": "spotify_playlist", "path": str(export)},
        ],
        capsys,
    )
    assert "10,000 rows" in next(line for line in _step_lines(out, "ingest") if "total" in line)
    assert _step_lines(out, "matrix")[0].startswith("[matrix] gold.interactions:")
    for step in ("evaluate", "weekly", "rnn"):
        assert _step_lines(out, step) == [
            f"[{step}] skipped: 1 listener is too few for collaborative filtering; need at least 2"
        ]
    assert _step_lines(out, "rl")[0].startswith("[rl] skipped: needs gold.")


@pytest.mark.slow
def test_pipeline_on_play_counts_only(tmp_path, capsys):
    from tests.conftest import shared_data

    counts = shared_data("lastfm-hetrec-2k", "user_artists.dat")
    out = _pipeline(tmp_path, [{"kind": "play_counts", "format": "hetrec", "path": str(counts)}], capsys)
    assert "92,834 rows merged into silver.play_counts" in out
    assert "[evaluate] play counts have no timestamps, using a 20% per-user holdout of gold.interactions" in out
    assert any(line.startswith("[weekly] model ") for line in _step_lines(out, "weekly"))
    assert _step_lines(out, "rnn") == [
        "[rnn] skipped: no listening events with timestamps (play counts only): the taste RNN needs plays in order"
    ]
    assert _step_lines(out, "rl")[0].startswith("[rl] skipped: needs silver.listen_events")


@pytest.mark.slow
def test_pipeline_on_events_counts_and_playlists(tmp_path, capsys):
    from tests.conftest import shared_data

    export = shared_data("spotify-account-export")
    lastfm = shared_data("lastfm-1k-sample", "userid-timestamp-artid-artname-traid-traname.tsv")
    counts = tmp_path / "triplets.txt"
    counts.write_text("tp1\tSOAKIMP12A8C130995\t3\ntp1\tSOAPDEY12A81C210A9\t1\ntp2\tSOAKIMP12A8C130995\t7\n")
    out = _pipeline(
        tmp_path,
        [
            {"kind": "events", "format": "spotify_streaming_history", "path": str(export)},
            {"kind": "events", "format": "lastfm_1k", "path": str(lastfm)},
            {
                "kind": "play_counts",
                "format": "generic_play_counts",
                "path": str(counts),
                "options": {"user_prefix": "tp:"},
            },
            {"kind": "playlists", "format": "spotify_playlist", "path": str(export)},
        ],
        capsys,
    )
    for step in ("matrix", "evaluate", "weekly", "rnn", "rl"):
        lines = _step_lines(out, step)
        assert lines, f"{step} said nothing"
        assert not any("skipped" in line for line in lines), lines


def test_reader_names_yaml_reads_as_booleans_must_be_quoted(tmp_path):
    from spotrec.config import load_config
    from spotrec.errors import ConfigError

    conf = tmp_path / "c.yaml"
    conf.write_text("ingest:\n  sources:\n    - {kind: playlists, format: yes, path: /data/yes_small}\n")
    with pytest.raises((ConfigError, ValueError), match="quote the value"):
        load_config(str(conf), [])
    conf.write_text('ingest:\n  sources:\n    - {kind: playlists, format: "yes", path: /data/yes_small}\n')
    assert load_config(str(conf), []).ingest.sources[0].format == "yes"
