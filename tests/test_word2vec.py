"""word2vec known-answer tests: songs that always share playlists end up nearer than random pairs."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from spotrec.config import RnnConfig
from spotrec.features.documents import build_vocabulary, encode_documents, write_parquet
from spotrec.rnn.cbow import cbow_pairs, keep_probabilities, noise_distribution, train_cbow
from spotrec.rnn.word2vec import CBOW_NS, SG_HS, embeddings_frame, train_mllib_word2vec, vector_matrix

GROUPS, PER_GROUP = 4, 6


def _planted_documents(n_docs: int = 240, length: int = 8, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Each document draws its songs from one of 4 disjoint groups: within-group songs co-occur, others never."""
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(n_docs):
        g = d % GROUPS
        songs = rng.choice(PER_GROUP, size=length) + g * PER_GROUP
        docs.append((f"d{d}", [f"t{s:02d}" for s in songs]))
    return docs


def _group(track_id: str) -> int:
    return int(track_id[1:]) // PER_GROUP


def _separation(track_ids: list[str], vectors: np.ndarray) -> tuple[float, float, float]:
    """Mean cosine within groups, across groups, and share of songs whose nearest song is in their group."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    groups = np.array([_group(t) for t in track_ids])
    same = groups[:, None] == groups[None, :]
    off_diag = ~np.eye(len(groups), dtype=bool)
    np.fill_diagonal(sims, -np.inf)
    nn_same = float(np.mean(groups[sims.argmax(axis=1)] == groups))
    np.fill_diagonal(sims, 0.0)
    return float(sims[same & off_diag].mean()), float(sims[~same].mean()), nn_same


@pytest.fixture
def planted(spark):
    docs = spark.createDataFrame(_planted_documents(), "doc_id string, tracks array<string>")
    vocab = build_vocabulary(docs, top_n=1000)
    encoded = encode_documents(docs, vocab, ["doc_id"], min_length=2)
    return docs, vocab, encoded


def test_mllib_skipgram_separates_planted_groups(spark, planted) -> None:
    _, vocab, encoded = planted
    cfg = RnnConfig(vector_size=16, window=3, w2v_epochs=5, w2v_lr=0.025, seed=3)
    emb = train_mllib_word2vec(encoded, cfg, "v1")
    assert emb.columns == ["track_id", "method", "vector", "model_version"]
    rows = sorted(emb.collect())
    assert len(rows) == GROUPS * PER_GROUP
    assert {r["method"] for r in rows} == {SG_HS} and {r["model_version"] for r in rows} == {"v1"}
    within, across, nn_same = _separation([r["track_id"] for r in rows], np.array([r["vector"] for r in rows]))
    assert within > across + 0.3, (within, across)
    assert nn_same >= 0.9
    matrix = vector_matrix(emb, vocab, 16)
    assert matrix.shape == (GROUPS * PER_GROUP, 16) and np.all(np.linalg.norm(matrix, axis=1) > 0)


def test_torch_cbow_ns_from_spark_parquet_separates_planted_groups(spark, planted, tmp_path, caplog) -> None:
    torch.set_num_threads(1)
    _, vocab, encoded = planted
    path = str(tmp_path / "docs")
    write_parquet(encoded.select("tokens"), path, files=2)
    voc = vocab.orderBy("token").collect()
    counts = np.array([r["count"] for r in voc])
    cfg = RnnConfig(
        vector_size=16, window=3, negatives=5, subsample=0.0, w2v_epochs=8, w2v_lr=0.02, w2v_batch_size=64, seed=5
    )
    with caplog.at_level("INFO", logger="spotrec.rnn.cbow"):
        result = train_cbow(path, counts, cfg)
    assert len([m for m in caplog.messages if m.startswith("cbow epoch")]) == 8
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    track_ids = [r["track_id"] for r in voc]
    within, across, nn_same = _separation(track_ids, result.vectors)
    assert within > across + 0.3, (within, across)
    assert nn_same >= 0.9
    frame = embeddings_frame(spark, track_ids, result.vectors, CBOW_NS, "v2")
    assert frame.count() == len(track_ids) and frame.first()["method"] == CBOW_NS

    # Same seed, same vectors: training is deterministic.
    again = train_cbow(path, counts, cfg)
    np.testing.assert_allclose(again.vectors, result.vectors, rtol=1e-5, atol=1e-6)


def test_cbow_pairs_never_cross_documents_and_respect_the_window() -> None:
    values = np.array([0, 1, 2, 3, 4, 5, 6])
    offsets = np.array([0, 3, 7])  # documents [0 1 2] and [3 4 5 6]
    contexts, songs = cbow_pairs(values, offsets, np.ones(7), window=2, pad=7, rng=np.random.default_rng(0))
    assert sorted(songs.tolist()) == list(range(7))
    first_doc = {0, 1, 2}
    for ctx, song in zip(contexts, songs):
        real = {int(c) for c in ctx if c != 7}
        assert real, song
        assert (real <= first_doc) == (int(song) in first_doc)
        assert all(abs(c - int(song)) <= 2 for c in real)
        assert int(song) not in real


def test_subsampling_and_noise_follow_word2vec_formulas() -> None:
    counts = np.array([900.0, 90.0, 10.0])
    keep = keep_probabilities(counts, 1e-2)
    f = counts / 1000
    np.testing.assert_allclose(keep, np.minimum(1.0, (np.sqrt(f / 1e-2) + 1) * 1e-2 / f))
    assert keep[0] < keep[1] <= keep[2] == 1.0
    np.testing.assert_allclose(keep_probabilities(counts, 0.0), 1.0)
    noise = noise_distribution(counts, 0.75)
    np.testing.assert_allclose(noise, counts**0.75 / (counts**0.75).sum())


def test_driver_side_vectors_become_tasks_under_sparks_size_warning(spark) -> None:
    from spotrec.spark import TASK_BYTES, local_frame

    # 6,000 songs x 64 floats pickle to ~3.5 MB: createDataFrame's 2 slices would be ~1.7 MB tasks.
    vectors = np.arange(6000 * 64, dtype=np.float32).reshape(6000, 64) / 1000
    ids = [f"track-{i:05d}" for i in range(6000)]
    frame = embeddings_frame(spark, ids, vectors, "cbow_ns", "v1")
    rows = [(t, "cbow_ns", [float(x) for x in v], "v1") for t, v in zip(ids, vectors)]
    assert frame.rdd.getNumPartitions() >= math.ceil(len(pickle.dumps(rows)) / TASK_BYTES)
    got = frame.orderBy("track_id").collect()
    assert [r.track_id for r in got] == ids and got[123].vector == pytest.approx(vectors[123].tolist())
    tiny = local_frame(spark, [(1,), (2,)], "x int")
    assert tiny.rdd.getNumPartitions() <= 2 and sorted(r.x for r in tiny.collect()) == [1, 2]
