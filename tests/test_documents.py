"""Documents (playlists, sessions), vocabulary, RNN windows and recent-play exclusion: exact rows."""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
from chispa import assert_df_equality

from spotrec.features.documents import (
    build_vocabulary,
    encode_documents,
    last_n,
    play_sequences,
    playlist_documents,
    recent_tracks,
    rnn_windows,
    session_documents,
    validation_split,
    write_parquet,
)

EVENTS_DDL = "event_id string, user_id string, track_id string, ts timestamp, session_id string, session_position int"
DOCS_DDL = "doc_id string, doc_kind string, tracks array<string>"


def _t(minute: int, day: int = 1) -> dt.datetime:
    return dt.datetime(2026, 1, day, 12, minute)


def test_playlist_documents_follow_position_order(spark) -> None:
    playlists = spark.createDataFrame(
        [("p1", 2, "c"), ("p1", 0, "a"), ("p1", 1, "b"), ("p2", 0, "z")],
        "playlist_id string, position int, track_id string",
    )
    expected = spark.createDataFrame(
        [("playlist:p1", "playlist", ["a", "b", "c"]), ("playlist:p2", "playlist", ["z"])], DOCS_DDL
    )
    assert_df_equality(playlist_documents(playlists), expected, ignore_row_order=True, ignore_nullable=True)


def test_session_documents_order_by_time_and_fall_back_to_day(spark) -> None:
    events = spark.createDataFrame(
        [
            ("e1", "u1", "b", _t(5), "s1", 1),
            ("e2", "u1", "a", _t(1), "s1", 0),
            ("e3", "u1", "c", _t(9), None, None),
            ("e4", "u2", "a", _t(2), "s1", 0),
        ],
        EVENTS_DDL,
    )
    expected = spark.createDataFrame(
        [
            ("session:u1:s1", "session", ["a", "b"]),
            ("session:u1:day:2026-01-01", "session", ["c"]),
            ("session:u2:s1", "session", ["a"]),
        ],
        DOCS_DDL,
    )
    assert_df_equality(session_documents(events), expected, ignore_row_order=True, ignore_nullable=True)


def test_vocabulary_keeps_top_n_with_deterministic_tokens_and_encoding_drops_the_rest(spark) -> None:
    docs = spark.createDataFrame(
        [("d1", "playlist", ["a", "x", "b", "a"]), ("d2", "session", ["b", "c", "a"]), ("d3", "session", ["c", "x"])],
        DOCS_DDL,
    )
    vocab = build_vocabulary(docs, top_n=3)
    # counts: a=3, b=2, c=2, x=2 -> top 3 by count desc, ties by id: a, b, c
    expected_vocab = spark.createDataFrame(
        [("a", 0, 3), ("b", 1, 2), ("c", 2, 2)], "track_id string, token int, count long"
    )
    assert_df_equality(vocab, expected_vocab, ignore_row_order=True, ignore_nullable=True)

    encoded = encode_documents(docs, vocab, ["doc_id", "doc_kind"], min_length=2)
    expected = spark.createDataFrame(
        [("d1", "playlist", ["a", "b", "a"], [0, 1, 0]), ("d2", "session", ["b", "c", "a"], [1, 2, 0])],
        DOCS_DDL + ", tokens array<int>",
    )
    assert_df_equality(encoded, expected, ignore_row_order=True, ignore_nullable=True)


def test_rnn_windows_have_n_inputs_and_the_next_track_as_target(spark) -> None:
    seqs = spark.createDataFrame(
        [("u1", ["a", "b", "c", "d"], [0, 1, 2, 3]), ("u2", ["a", "b"], [0, 1])],
        "user_id string, tracks array<string>, tokens array<int>",
    )
    expected = spark.createDataFrame(
        [
            ("u1", 2, ["a", "b"], "c", [0, 1], 2),
            ("u1", 3, ["b", "c"], "d", [1, 2], 3),
        ],
        "user_id string, window_end int, inputs array<string>, target string, input_tokens array<int>, "
        "target_token int",
    )
    assert_df_equality(rnn_windows(seqs, n=2), expected, ignore_row_order=True, ignore_nullable=True)
    assert rnn_windows(seqs, n=2, stride=2).select("window_end").collect()[0][0] == 2
    assert rnn_windows(seqs, n=2, stride=2).count() == 1

    padded = rnn_windows(seqs, n=2, min_inputs=1).where("user_id = 'u2'")
    expected_padded = spark.createDataFrame(
        [("u2", 1, [None, "a"], "b", [-1, 0], 1)],
        "user_id string, window_end int, inputs array<string>, target string, input_tokens array<int>, "
        "target_token int",
    )
    assert_df_equality(padded, expected_padded, ignore_row_order=True, ignore_nullable=True)
    assert rnn_windows(seqs, n=2, min_inputs=1).count() == 4  # u1: targets at 1, 2, 3; u2: at 1

    expected_last = spark.createDataFrame(
        [("u1", ["c", "d"], [2, 3]), ("u2", ["a", "b"], [0, 1])],
        "user_id string, tracks array<string>, tokens array<int>",
    )
    assert_df_equality(last_n(seqs, 2), expected_last, ignore_row_order=True, ignore_nullable=True)


def test_rnn_windows_with_new_targets_keep_first_plays_only(spark) -> None:
    seqs = spark.createDataFrame(
        [("u1", ["a", "b", "a", "c", "b", "d"], [0, 1, 0, 2, 1, 3])],
        "user_id string, tracks array<string>, tokens array<int>",
    )
    # Targets at positions 1..5 are b, a, c, b, d; the replays of a (2) and b (4) are dropped.
    got = rnn_windows(seqs, n=2, min_inputs=1, new_targets=True)
    expected = spark.createDataFrame(
        [
            ("u1", 1, [None, "a"], "b", [-1, 0], 1),
            ("u1", 3, ["b", "a"], "c", [1, 0], 2),
            ("u1", 5, ["c", "b"], "d", [2, 1], 3),
        ],
        "user_id string, window_end int, inputs array<string>, target string, input_tokens array<int>, "
        "target_token int",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_play_sequences_are_time_ordered_per_user(spark) -> None:
    events = spark.createDataFrame(
        [("e2", "u1", "b", _t(5), "s1", 1), ("e1", "u1", "a", _t(1), "s1", 0), ("e3", "u1", "c", _t(1, 2), "s2", 0)],
        EVENTS_DDL,
    )
    expected = spark.createDataFrame([("u1", ["a", "b", "c"])], "user_id string, tracks array<string>")
    assert_df_equality(play_sequences(events), expected, ignore_row_order=True, ignore_nullable=True)


def test_recent_tracks_uses_the_latest_event_as_reference(spark) -> None:
    events = spark.createDataFrame(
        [
            ("e1", "u1", "old", _t(0, 1), None, None),
            ("e2", "u1", "new", _t(0, 9), None, None),
            ("e3", "u2", "new", _t(0, 10), None, None),
            ("e4", "u2", "new", _t(5, 10), None, None),
        ],
        EVENTS_DDL,
    )
    expected = spark.createDataFrame([("u1", "new"), ("u2", "new")], "user_id string, track_id string")
    assert_df_equality(recent_tracks(events, days=3), expected, ignore_row_order=True, ignore_nullable=True)
    assert recent_tracks(events, days=0).count() == 0
    as_of = recent_tracks(events, days=3, as_of=dt.datetime(2026, 1, 2, 0, 0))
    expected_as_of = spark.createDataFrame([("u1", "old")], "user_id string, track_id string")
    assert_df_equality(as_of, expected_as_of, ignore_row_order=True, ignore_nullable=True)


def test_validation_split_keeps_users_whole_and_parquet_round_trips(spark, tmp_path) -> None:
    rows = [(f"u{i}", j) for i in range(40) for j in range(3)]
    windows = spark.createDataFrame(rows, "user_id string, window_end int")
    train, val = validation_split(windows, 0.25, seed=1)
    train_users = {r[0] for r in train.select("user_id").distinct().collect()}
    val_users = {r[0] for r in val.select("user_id").distinct().collect()}
    assert not train_users & val_users
    assert len(train_users | val_users) == 40
    assert 3 <= len(val_users) <= 20
    write_parquet(windows, str(tmp_path / "w"), files=2)
    assert pq.read_table(str(tmp_path / "w")).num_rows == 120
