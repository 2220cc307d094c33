"""The rnn step's last-week evaluation: exact rows and hand-computed metrics on tiny frames, a planted
sequential world where the taste RNN must beat the mean of history, the step end to end, and the Yes.com
benchmark's entry point on a tiny planted playlist file."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch
from chispa import assert_df_equality

from benchmarks.yes_eval import evaluate_yes, format_yes_report, yes_playlist_songs
from spotrec.config import RnnConfig
from spotrec.evaluation.harness import EvalResult
from spotrec.evaluation.metrics import NEXT_HIT_RATE, NEXT_MRR, next_track_metrics
from spotrec.evaluation.split import first_new_tracks
from spotrec.features.documents import rnn_windows, validation_split, write_parquet
from spotrec.rnn.evaluate import evaluate_next_track
from spotrec.rnn.recommender import LAST_TRACK, MEAN_HISTORY, MEAN_HISTORY_BIAS, RNN
from spotrec.rnn.taste_rnn import load_checkpoint
from spotrec.rnn.training import train_taste_rnn
from spotrec.rnn.week_eval import POPULARITY, format_results
from spotrec.steps.rnn import evaluate_rnn

EVENTS = "event_id string, user_id string, track_id string, ts timestamp"


def test_first_new_tracks_skips_heard_tracks_and_unknown_users(spark) -> None:
    t = dt.datetime(2026, 3, 1, 12)
    train = spark.createDataFrame(
        [("e1", "u1", "a", t), ("e2", "u1", "b", t), ("e3", "u2", "a", t)],
        EVENTS,
    )
    test = spark.createDataFrame(
        [
            ("e4", "u1", "a", t + dt.timedelta(days=8)),  # heard: not new
            ("e6", "u1", "d", t + dt.timedelta(days=9)),
            ("e5", "u1", "c", t + dt.timedelta(days=9)),  # same instant as e6: event_id breaks the tie
            ("e7", "u2", "a", t + dt.timedelta(days=8)),  # u2 only replays
            ("e8", "u3", "z", t + dt.timedelta(days=8)),  # u3 has no training history
        ],
        EVENTS,
    )
    expected = spark.createDataFrame([("u1", "c")], "user_id string, track_id string")
    assert_df_equality(first_new_tracks(train, test), expected, ignore_row_order=True, ignore_nullable=True)


def test_next_track_metrics_hand_computed(spark) -> None:
    recs = spark.createDataFrame(
        [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "c", 1), ("u2", "d", 2)],
        "user_id string, track_id string, rank int",
    )
    nxt = spark.createDataFrame([("u1", "c"), ("u2", "d"), ("u3", "a")], "user_id string, track_id string")
    # u1 at rank 3, u2 at rank 2, u3 has no recommendations.
    got = next_track_metrics(recs, nxt, [3, 2])
    assert got[3] == pytest.approx({NEXT_HIT_RATE: 2 / 3, NEXT_MRR: (1 / 3 + 1 / 2) / 3})
    assert got[2] == pytest.approx({NEXT_HIT_RATE: 1 / 3, NEXT_MRR: (1 / 2) / 3})
    with pytest.raises(ValueError, match="next_tracks is empty"):
        next_track_metrics(recs, nxt.limit(0), [3])


def test_format_results_puts_missing_metrics_as_dashes() -> None:
    ours = EvalResult("rnn", 10, 50, {"ndcg": 0.5, NEXT_HIT_RATE: 0.25, f"{NEXT_HIT_RATE}@50": 0.75})
    als = EvalResult("als", 10, 10, {"ndcg": 0.125})
    table = format_results([ours, als], 10, 50).splitlines()
    assert table[0].split("|")[1:4] == [" model ", " ndcg@10 ", " map@10 "]
    assert "0.5000" in table[2] and "0.2500" in table[2] and "0.7500" in table[2]
    assert table[3].split("|")[2].strip() == "0.1250" and table[3].split("|")[6].strip() == "-"


# -- a planted sequential world: the next song follows from the last one, the mean of history says nothing --

V, D, N = 24, 8, 4


def _walks(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[tuple[str, list[str], list[int]]]]:
    """Random unit song vectors, a successor cycle through all songs, and 160 users walking it."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(V, D)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    order = rng.permutation(V)
    successor = np.empty(V, dtype=int)
    successor[order] = np.roll(order, -1)
    users = []
    for u in range(160):
        seq = [int(rng.integers(V))]
        for _ in range(8):
            seq.append(int(successor[seq[-1]]))
        users.append((f"u{u:03d}", [f"t{t}" for t in seq], seq))
    return vectors, successor, users


@pytest.mark.parametrize("loss", ["softmax", "l2"])
def test_rnn_beats_mean_of_history_on_a_planted_sequential_world(spark, tmp_path, loss) -> None:
    torch.set_num_threads(1)
    vectors, _, users = _walks()
    train_users, test_users = users[:120], users[120:]
    seqs = spark.createDataFrame(train_users, "user_id string, tracks array<string>, tokens array<int>")
    train, val = validation_split(rnn_windows(seqs, n=N, min_inputs=1), 0.2, seed=5)
    write_parquet(train.select("input_tokens", "target_token"), str(tmp_path / "train"), files=1)
    write_parquet(val.select("input_tokens", "target_token"), str(tmp_path / "val"), files=1)
    cfg = RnnConfig(
        rnn_loss=loss, hidden_size=32, sequence_length=N, rnn_epochs=40, rnn_lr=0.01, batch_size=32, patience=5
    )
    result = train_taste_rnn(str(tmp_path / "train"), str(tmp_path / "val"), vectors, cfg, str(tmp_path), "v")
    model = load_checkpoint(result.checkpoint)
    assert model.spec.loss == loss and (model.song_bias is not None) == (loss == "softmax")

    # Held-out users: the last N songs of each walk predict the song after them (never in the history).
    histories = [np.asarray(seq[-N - 1 : -1]) for _, _, seq in test_users]
    targets = np.asarray([seq[-1] for _, _, seq in test_users])
    res = evaluate_next_track(histories, targets, vectors, np.ones(V), model, ks=(1, 5))
    assert res["rnn"]["hit@1"] >= 0.9
    assert res["rnn"]["mrr"] > res[MEAN_HISTORY.removeprefix("w2v_")]["mrr"] + 0.3
    assert res["rnn"]["hit@5"] >= res["last_track"]["hit@5"]


@pytest.mark.slow  # a whole step end to end: in make test, not make test-fast
def test_rnn_evaluation_end_to_end_stores_every_figure_beside_als(spark, storage, config, capsys) -> None:
    """Two weeks of sessions walking the successor cycle; the last week is the test week."""
    from pyspark.sql import functions as F

    from spotrec.evaluation.metrics import metrics_frame
    from spotrec.tables import MODEL_METRICS, SILVER_EVENTS
    from tests.test_ann import _silver_events

    torch.set_num_threads(1)
    _, successor, _ = _walks()
    rng = np.random.default_rng(1)
    start = dt.datetime(2026, 2, 2, 8)
    plays = []
    for u in range(30):
        track = int(rng.integers(V))
        for day in range(14):
            for j in range(3):  # one session a day, continuing the walk
                plays.append((f"u{u:02d}", f"t{track}", start + dt.timedelta(days=day, minutes=4 * j), f"s{day}"))
                track = int(successor[track])
    storage.overwrite(SILVER_EVENTS, _silver_events(spark, plays))
    storage.append(MODEL_METRICS, metrics_frame(spark, "r-eval", "als", "als-v", "last-week", {"ndcg": 0.125}, 10))
    config.rnn = RnnConfig(
        vector_size=8,
        window=2,
        w2v_epochs=2,
        w2v_batch_size=64,
        sequence_length=4,
        hidden_size=16,
        rnn_epochs=3,
        batch_size=32,
        n_trees=5,
        use_playlists=False,
        eval_next_k=20,
    )
    said: list[str] = []
    ev = evaluate_rnn(spark, storage, config, "r-disc", model_version="v-eval", say=said.append)

    assert [r.model for r in ev.results] == [RNN, MEAN_HISTORY, LAST_TRACK, MEAN_HISTORY_BIAS, POPULARITY]
    assert [r.model for r in ev.stored] == ["als"] and ev.stored[0].metrics == {"ndcg": 0.125}
    assert ev.users == 30  # 24 songs, 21 plays a week: every user meets a song in the test week they had not heard
    rows = storage.read(MODEL_METRICS).where(F.col("run_id") == "r-disc").collect()
    got = {(r["model"], r["metric"], r["k"]) for r in rows}
    assert {(RNN, "ndcg", 10), (RNN, NEXT_HIT_RATE, 10), (RNN, NEXT_MRR, 20), (POPULARITY, "hit_rate", 10)} <= got
    assert len(rows) == 5 * (8 + 2 + 2)  # 8 harness metrics (no tracks table) + 2 next-track at k + 2 at next_k
    assert all(r["dataset"] == "last-week" for r in rows)
    assert {r["model_version"] for r in rows if r["model"] == RNN} == {"v-eval"}
    out = "\n".join(said)
    assert "| rnn " in out and "| als " in out and "0.1250" in out
    assert capsys.readouterr().out == ""  # reported through `say`, never printed by the library


def test_yes_benchmark_entry_point_on_a_tiny_planted_playlist_file(spark, tmp_path) -> None:
    """Smoke run of the Yes.com protocol on a file in its format where song i is always followed by i + 1."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    lines = [" ".join(str(10_000 + i) for i in range(12)) + " ", " ".join("1" for _ in range(12)) + " "]
    for _ in range(120):
        start = int(rng.integers(12))
        lines.append(" ".join(str((start + j) % 12) for j in range(6)) + " ")
    folder = tmp_path / "yes"
    folder.mkdir()
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    # Read by the one Yes.com reader (spotrec.sources.yes), in the order of the playlist ids
    # "yes:train:<line number>" as strings: lines 3..122, so line 10 comes first.
    playlists = yes_playlist_songs(spark, str(folder / "train.txt"))
    assert len(playlists) == 120
    assert playlists[0] == [f"yes:{song}" for song in lines[10 - 1].split()]

    cfg = RnnConfig(
        vector_size=8,
        window=2,
        w2v_epochs=3,
        w2v_batch_size=64,
        sequence_length=3,
        hidden_size=16,
        rnn_epochs=15,
        rnn_lr=0.01,
        batch_size=32,
        patience=3,
        seed=3,
    )
    report = evaluate_yes(spark, str(folder), cfg, str(tmp_path / "work"))
    assert report["facts"]["playlists"] == 120 and report["facts"]["songs"] == 12 and report["facts"]["queries"] == 12
    assert set(report["metrics"]) == {"rnn", "last_track", "mean_history", "popularity"}
    # The rule is deterministic, so the RNN should rank the true next song near the top of 12 songs.
    assert report["metrics"]["rnn"]["hit@10"] >= report["metrics"]["popularity"]["hit@10"]
    assert report["metrics"]["rnn"]["mrr"] >= 0.5
    assert "published" in format_yes_report(report)


def test_stored_results_take_the_newest_evaluate_run_whichever_solver_named_its_als_row(spark, storage) -> None:
    """The evaluate step names its ALS row by solver (``als`` MLlib, ``als-cg`` the default): the rnn table
    must print the newest run's row under either name, not an older run's."""
    import datetime as dt

    from pyspark.sql import functions as F

    from spotrec.evaluation.metrics import metrics_frame
    from spotrec.steps.rnn import stored_results
    from spotrec.tables import MODEL_METRICS

    def run(run_id: str, als: str, ndcg: float, day: int):  # type: ignore[no-untyped-def]
        frame = metrics_frame(spark, run_id, als, "v", "last-week", {"ndcg": ndcg}, 10).unionByName(
            metrics_frame(spark, run_id, "cooccurrence", None, "last-week", {"ndcg": ndcg / 2}, 10)
        )
        return frame.withColumn("created_at", F.lit(dt.datetime(2026, 12, day)))

    storage.append(MODEL_METRICS, run("old", "als", 0.2, 1))
    storage.append(MODEL_METRICS, run("new", "als-cg", 0.3, 2))
    got = [(r.model, r.metrics) for r in stored_results(storage)]
    assert got == [("als-cg", {"ndcg": 0.3}), ("cooccurrence", {"ndcg": 0.15})]
