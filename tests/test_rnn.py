"""Taste RNN known-answer test: it learns a planted successor rule (track i is always followed by f(i))."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from spotrec.config import RnnConfig
from spotrec.features.documents import last_n, rnn_windows, validation_split, write_parquet
from spotrec.rnn.ann import taste_vectors
from spotrec.rnn.taste_rnn import load_checkpoint, predict_taste, taste_loss
from spotrec.rnn.training import WindowBatches, run_training, train_taste_rnn

V, D, N = 20, 8, 3


def _world(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[tuple[str, list[str], list[int]]]]:
    """Unit song vectors, a successor permutation without fixed points, and users walking it."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(V, D)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    successor_of = np.empty(V, dtype=int)
    order = rng.permutation(V)
    successor_of[order] = np.roll(order, -1)  # one cycle through all songs: f(i) != i
    users = []
    for u in range(100):
        seq = [int(rng.integers(V))]
        for _ in range(9):
            seq.append(int(successor_of[seq[-1]]))
        users.append((f"u{u:03d}", [f"t{t}" for t in seq], seq))
    return vectors, successor_of, users


@pytest.fixture(scope="module")
def planted_windows(spark, tmp_path_factory):
    vectors, successor_of, users = _world()
    seqs = spark.createDataFrame(users, "user_id string, tracks array<string>, tokens array<int>")
    windows = rnn_windows(seqs, n=N)
    train, val = validation_split(windows, 0.2, seed=4)
    root = tmp_path_factory.mktemp("rnn")
    write_parquet(train.select("input_tokens", "target_token"), str(root / "train"), files=2)
    write_parquet(val.select("input_tokens", "target_token"), str(root / "val"), files=1)
    vec_path = str(root / "vectors.npy")
    np.save(vec_path, vectors)
    return {"root": root, "vectors": vectors, "successor": successor_of, "seqs": seqs, "vec_path": vec_path}


def _accuracy(model, vectors: np.ndarray, successor_of: np.ndarray, val_dir: str) -> float:
    table = pq.read_table(val_dir)
    inputs = [np.asarray(x, dtype=np.int64) for x in table.column("input_tokens").to_pylist()]
    tastes = predict_taste(model, vectors, inputs)
    nearest = (tastes / np.linalg.norm(tastes, axis=1, keepdims=True) @ vectors.T).argmax(axis=1)
    expected = successor_of[[x[-1] for x in inputs]]
    assert len(inputs) >= 20
    return float(np.mean(nearest == expected))


@pytest.mark.parametrize(("cell", "loss"), [("gru", "l2"), ("lstm", "cosine")])
def test_rnn_learns_planted_successor_rule(planted_windows, tmp_path, caplog, cell, loss) -> None:
    torch.set_num_threads(1)
    w = planted_windows
    cfg = RnnConfig(
        rnn_cell=cell,
        rnn_loss=loss,
        hidden_size=32,
        sequence_length=N,
        rnn_epochs=40,
        rnn_lr=0.01,
        batch_size=32,
        patience=5,
        seed=1,
    )
    with caplog.at_level("INFO", logger="spotrec.rnn.training"):
        result = train_taste_rnn(
            str(w["root"] / "train"), str(w["root"] / "val"), w["vectors"], cfg, str(tmp_path), f"v-{cell}"
        )
    epochs_run = len(result.val_losses)
    assert len([m for m in caplog.messages if m.startswith("rnn epoch")]) == epochs_run
    assert result.val_losses[result.best_epoch - 1] <= min(result.val_losses) + 1e-6
    assert result.val_losses[result.best_epoch - 1] < result.val_losses[0]

    model = load_checkpoint(result.checkpoint)
    assert model.spec.cell == cell and model.spec.model_version == f"v-{cell}"
    with open(result.checkpoint[:-3] + ".json") as fh:
        meta = json.load(fh)
    assert meta["best_epoch"] == result.best_epoch
    assert _accuracy(model, w["vectors"], w["successor"], str(w["root"] / "val")) >= 0.8


def test_early_stopping_stops_after_patience_epochs_without_improvement(planted_windows, tmp_path) -> None:
    torch.set_num_threads(1)
    w = planted_windows
    # A learning rate of 0 never improves on epoch 1, so training must stop after 1 + patience epochs.
    cfg = RnnConfig(hidden_size=8, sequence_length=N, rnn_epochs=30, rnn_lr=0.0, batch_size=64, patience=2)
    result = train_taste_rnn(str(w["root"] / "train"), str(w["root"] / "val"), w["vectors"], cfg, str(tmp_path), "v0")
    assert len(result.val_losses) == 3 and result.best_epoch == 1


def test_bounded_epochs_read_at_most_the_bound_and_the_time_budget_stops_training(
    planted_windows, tmp_path, caplog
) -> None:
    torch.set_num_threads(1)
    w = planted_windows
    # 100 users x 6 windows, 80% training: ~480 windows; a bound of 64 with batches of 32 reads exactly 64.
    cfg = RnnConfig(hidden_size=8, sequence_length=N, rnn_epochs=3, batch_size=32, max_windows_per_epoch=64)
    with caplog.at_level("INFO", logger="spotrec.rnn.training"):
        result = train_taste_rnn(
            str(w["root"] / "train"), str(w["root"] / "val"), w["vectors"], cfg, str(tmp_path), "b"
        )
    epochs = [m for m in caplog.messages if m.startswith("rnn epoch")]
    assert len(result.val_losses) == 3 and all("windows=64 " in m for m in epochs), epochs
    caplog.clear()
    budget = cfg.model_copy(update={"max_windows_per_epoch": 0, "time_budget_s": 1e-6, "rnn_epochs": 5})
    with caplog.at_level("INFO", logger="spotrec.rnn.training"):
        result = train_taste_rnn(str(w["root"] / "train"), None, w["vectors"], budget, str(tmp_path), "t")
    assert len(result.train_losses) == 1 and any("time budget" in m for m in caplog.messages)
    assert not any("windows=64 " in m for m in caplog.messages)  # unbounded epochs read every window


def test_run_training_plain_call_and_executor_taste_vectors_match_driver(planted_windows, tmp_path) -> None:
    torch.set_num_threads(1)
    w = planted_windows
    cfg = RnnConfig(hidden_size=16, sequence_length=N, rnn_epochs=2, batch_size=64, seed=2)
    pt = run_training(str(w["root"] / "train"), str(w["root"] / "val"), w["vec_path"], cfg, str(tmp_path), "v-run")
    assert os.path.basename(pt) == "v-run-rnn.pt" and os.path.exists(pt)

    histories = last_n(w["seqs"], N)
    tastes = taste_vectors(histories, pt, w["vec_path"], "v-run")
    got = {r["user_id"]: np.asarray(r["vector"]) for r in tastes.collect()}
    assert {r["model_version"] for r in tastes.select("model_version").distinct().collect()} == {"v-run"}
    rows = histories.orderBy("user_id").collect()
    expected = predict_taste(load_checkpoint(pt), w["vectors"], [np.asarray(r["tokens"]) for r in rows])
    assert len(got) == len(rows) == 100
    for r, e in zip(rows, expected):
        np.testing.assert_allclose(got[r["user_id"]], e, rtol=1e-5, atol=1e-6)


def test_predict_taste_handles_short_and_empty_histories(planted_windows) -> None:
    w = planted_windows
    cfg = RnnConfig(hidden_size=8, sequence_length=N)
    from spotrec.rnn.taste_rnn import TasteRNN
    from spotrec.rnn.training import _spec

    model = TasteRNN(_spec(cfg, D, "x")).eval()
    out = predict_taste(model, w["vectors"], [np.array([1, 2, 3]), np.array([4]), np.array([], dtype=np.int64)])
    assert out.shape == (3, D)
    np.testing.assert_allclose(out[2], 0.0)
    padded = np.zeros((1, N, D), dtype=np.float32)
    padded[0, -1] = w["vectors"][4]  # a one-song history is left-padded with zero vectors, as in training
    with torch.no_grad():
        one = model(torch.from_numpy(padded)).numpy()[0]
    np.testing.assert_allclose(out[1], one, rtol=1e-5, atol=1e-6)


def test_losses_match_hand_values_and_batches_cover_every_window(planted_windows) -> None:
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    assert taste_loss(p, t, "l2").item() == pytest.approx((2.0 + 1.0) / 2)
    assert taste_loss(p, t, "cosine").item() == pytest.approx((1.0 + 0.0) / 2)
    files = sorted(str(f) for f in (planted_windows["root"] / "train").glob("*.parquet"))
    batches = list(WindowBatches(files, batch_size=16, seed=0))
    total = sum(pq.read_table(f).num_rows for f in files)
    assert sum(len(t) for _, t in batches) == total
    assert all(x.shape[1] == N for x, _ in batches)
    assert RnnConfig().model_dump()["rnn_cell"] == "gru"


def test_next_track_metrics_match_hand_computed_values() -> None:
    from spotrec.evaluation.metrics import next_track_metrics_arrays

    ranked = np.array([[5, 3, 9], [1, 2, 3], [7, 8, 4], [0, 6, 2]])
    targets = np.array([3, 1, 2, -1])  # ranks 2, 1, absent, out-of-vocabulary
    m = next_track_metrics_arrays(ranked, targets, ks=(1, 2, 3))
    assert m == pytest.approx({"hit@1": 0.25, "hit@2": 0.5, "hit@3": 0.5, "mrr": (0.5 + 1.0) / 4})


def test_baseline_rankings_exclude_history_and_follow_vectors_and_counts() -> None:
    from spotrec.rnn.evaluate import evaluate_next_track, rank_by_popularity, rank_by_vectors

    vectors = np.array([[1, 0], [0.9, 0.1], [0.05, 1], [-1, 0]], dtype=np.float32)
    assert rank_by_vectors(vectors[[0]], vectors, 2).tolist() == [[0, 1]]
    assert rank_by_vectors(vectors[[0]], vectors, 2, exclude=[[0]]).tolist() == [[1, 2]]
    counts = np.array([5, 50, 1, 20])
    assert rank_by_popularity(counts, 2, 2).tolist() == [[1, 3], [1, 3]]
    assert rank_by_popularity(counts, 1, 2, exclude=[[1]]).tolist() == [[3, 0]]
    # Query 1: history [0] -> 1 (rank 1 by vectors and by popularity). Query 2: history [2] -> 3, which is
    # third by cosine (after 1 and 0) and second by popularity (after 1).
    res = evaluate_next_track([np.array([0]), np.array([2])], np.array([1, 3]), vectors, counts, ks=(1, 3))
    assert res["last_track"] == pytest.approx({"hit@1": 0.5, "hit@3": 1.0, "mrr": (1.0 + 1 / 3) / 2})
    assert res["mean_history"] == res["last_track"]
    assert res["popularity"] == pytest.approx({"hit@1": 0.5, "hit@3": 1.0, "mrr": (1.0 + 0.5) / 2})


def test_recommendation_metrics_in_spark_hand_computed(spark) -> None:
    from spotrec.evaluation.metrics import ranking_metrics_with_mrr

    recs = spark.createDataFrame(
        [("u1", "a", 1), ("u1", "b", 2), ("u2", "c", 1), ("u2", "d", 2)], "user_id string, track_id string, rank int"
    )
    held = spark.createDataFrame([("u1", "b"), ("u2", "x")], "user_id string, track_id string")
    m = ranking_metrics_with_mrr(recs, held, k=2)
    assert m["hit_rate"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx(0.25)
    assert m["ndcg"] == pytest.approx((1 / np.log2(3)) / 2)


@pytest.mark.slow
def test_torch_distributor_trains_with_two_ddp_processes(planted_windows, tmp_path) -> None:
    w = planted_windows
    cfg = RnnConfig(
        hidden_size=8, sequence_length=N, rnn_epochs=2, batch_size=64, use_distributor=True, num_processes=2
    )
    pt = run_training(str(w["root"] / "train"), str(w["root"] / "val"), w["vec_path"], cfg, str(tmp_path), "v-ddp")
    model = load_checkpoint(pt)
    assert model.spec.model_version == "v-ddp" and model.spec.hidden_size == 8
    with open(pt[:-3] + ".json") as fh:
        assert len(json.load(fh)["val_losses"]) == 2


def test_rankings_leave_empty_slots_when_exclusions_leave_fewer_than_k_songs() -> None:
    from spotrec.rnn.evaluate import rank_by_popularity, rank_by_vectors

    vectors = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    assert rank_by_vectors(vectors[[0]], vectors, 3, exclude=[[0, 2]]).tolist() == [[1, -1, -1]]
    assert rank_by_popularity(np.array([3, 2, 1]), 1, 3, exclude=[[0]]).tolist() == [[1, 2, -1]]


def test_softmax_losses_match_hand_values() -> None:
    from spotrec.rnn.taste_rnn import retrieval_query, retrieval_space, sampled_softmax_loss, song_scores

    songs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    taste = torch.tensor([[1.0, 0.0]])
    bias = torch.tensor([0.0, 0.5])
    # Full softmax over two songs: scores (1, 0.5), target 0.
    expected = -np.log(np.exp(1.0) / (np.exp(1.0) + np.exp(0.5)))
    got = taste_loss(taste, songs[[0]], "softmax", torch.tensor([0]), songs, bias).item()
    assert got == pytest.approx(expected, rel=1e-6)
    assert song_scores(taste, songs, bias).tolist() == [[1.0, 0.5]]
    # Sampled: draws equal to the target are masked, each draw of song 1 adds exp(0.5) to the denominator.
    draws = torch.randint(0, 2, (7,), generator=torch.Generator().manual_seed(3))
    m = int((draws == 1).sum())
    sampled = sampled_softmax_loss(taste, torch.tensor([0]), songs, bias, 7, torch.Generator().manual_seed(3))
    assert sampled.item() == pytest.approx(-np.log(np.exp(1.0) / (np.exp(1.0) + m * np.exp(0.5))), rel=1e-6)

    # Retrieval: [vector, bias] . [taste, 1] is the model's score.
    from spotrec.rnn.taste_rnn import RnnSpec, TasteRNN

    model = TasteRNN(RnnSpec("gru", 2, 4, 1, 3, "softmax", "v", songs=2))
    with torch.no_grad():
        model.song_bias.copy_(bias)
    items, metric = retrieval_space(model, songs.numpy())
    assert metric == "dot" and items.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.5]]
    np.testing.assert_allclose(retrieval_query("softmax", taste.numpy()) @ items.T, [[1.0, 0.5]])


def test_a_bounded_epoch_samples_all_windows_afresh_not_the_first_rows(tmp_path) -> None:
    """One file of 4,000 windows, epochs of ~1/4 of them: each epoch is about a quarter, drawn from the whole
    file (not its first rows), and different epochs draw different windows."""
    import pyarrow as pa

    n = 4000
    windows = pa.table(
        {
            "input_tokens": pa.array([[i, i] for i in range(n)], pa.list_(pa.int32())),
            "target_token": pa.array(np.arange(n), pa.int32()),
        }
    )
    path = tmp_path / "w.parquet"
    pq.write_table(windows, path)
    data = WindowBatches([str(path)], batch_size=64, seed=3, fraction=0.25)
    seen = []
    for epoch in range(2):
        data.epoch = epoch
        batches = [t.numpy() for _, t in data]
        assert all(len(t) > 0 for t in batches)  # an empty batch would make the epoch's mean loss nan
        seen.append(np.concatenate(batches))
    for targets in seen:
        assert 0.2 * n < len(targets) < 0.3 * n and len(set(targets)) == len(targets)
        assert targets.max() > 0.9 * n and targets.min() < 0.1 * n  # from the whole file
    assert len(set(seen[0]) & set(seen[1])) < 0.5 * len(seen[0])  # a fresh draw each epoch
