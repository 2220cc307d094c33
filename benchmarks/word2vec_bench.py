"""Spark MLlib Word2Vec (skip-gram + hierarchical softmax) vs torch CBOW + negative sampling.

Both train on the same planted corpus: ``groups`` disjoint sets of songs, every playlist drawn (Zipf-skewed)
mostly from one set (``--noise`` of its songs from anywhere), so the right answer is known. Reported per
method: training time, tokens per second (corpus tokens x epochs / seconds), and retrieval quality:
precision@10 of each song's 10 nearest songs being in its own group, and the mean cosine within vs across
groups.

Usage: ``python benchmarks/word2vec_bench.py [--songs 5000] [--playlists 20000] [--epochs 3]``
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from spotrec.config import RnnConfig, SparkConfig
from spotrec.features.documents import build_vocabulary, encode_documents, write_parquet
from spotrec.rnn.cbow import train_cbow
from spotrec.rnn.word2vec import train_mllib_word2vec, vector_matrix
from spotrec.spark import get_spark


def planted_corpus(
    songs: int, groups: int, playlists: int, length: int, seed: int, noise: float = 0.3
) -> list[tuple[str, list[str]]]:
    """Playlists drawing Zipf-popular songs from one of ``groups`` disjoint song sets; a ``noise`` share of
    each playlist's songs comes from any group instead (real playlists are not pure genres)."""
    rng = np.random.default_rng(seed)
    per = songs // groups
    weights = 1.0 / np.arange(1, per + 1) ** 0.8
    weights /= weights.sum()
    docs = []
    for p in range(playlists):
        g = int(rng.integers(groups))
        home = rng.random(length) >= noise
        picks = rng.choice(per, size=length, p=weights) + np.where(home, g, rng.integers(groups, size=length)) * per
        docs.append((f"p{p}", [f"s{x}" for x in picks]))
    return docs


def quality(vectors: np.ndarray, groups_of: np.ndarray, k: int = 10) -> tuple[float, float, float]:
    """precision@k of same-group neighbours; mean cosine within groups; across groups (sampled pairs)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    precisions = []
    for start in range(0, len(unit), 1024):
        sims = unit[start : start + 1024] @ unit.T
        for row in range(sims.shape[0]):
            sims[row, start + row] = -np.inf
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        precisions.append((groups_of[top] == groups_of[start : start + 1024, None]).mean(axis=1))
    rng = np.random.default_rng(0)
    a, b = rng.integers(len(unit), size=(2, 20000))
    cos = (unit[a] * unit[b]).sum(1)
    same = groups_of[a] == groups_of[b]
    return float(np.concatenate(precisions).mean()), float(cos[same & (a != b)].mean()), float(cos[~same].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=5000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--playlists", type=int, default=20000)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--noise", type=float, default=0.3, help="share of off-group songs per playlist")
    parser.add_argument("--partitions", type=int, default=2, help="MLlib numPartitions")
    args = parser.parse_args()

    spark = get_spark(SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="4g"))
    docs = spark.createDataFrame(
        planted_corpus(args.songs, args.groups, args.playlists, args.length, 0, args.noise),
        "doc_id string, tracks array<string>",
    )
    vocab = build_vocabulary(docs, top_n=args.songs).cache()
    voc = vocab.orderBy("token").collect()
    counts = np.array([r["count"] for r in voc], dtype=np.float64)
    per = args.songs // args.groups
    groups_of = np.array([int(r["track_id"][1:]) // per for r in voc])
    encoded = encode_documents(docs, vocab, ["doc_id"], min_length=2).cache()
    tokens = int(counts.sum())
    print(f"corpus: {args.playlists} playlists, {tokens} tokens, {len(voc)} songs in {args.groups} groups")

    cfg = RnnConfig(
        vector_size=args.dim,
        window=5,
        negatives=5,
        subsample=1e-4,
        w2v_epochs=args.epochs,
        w2v_lr=0.01,
        w2v_batch_size=1024,
        w2v_partitions=args.partitions,
        seed=1,
    )
    rows = []
    t = time.perf_counter()
    emb = train_mllib_word2vec(encoded, cfg, "bench").cache()
    emb.count()
    mllib_s = time.perf_counter() - t
    rows.append(("spark mllib skip-gram + HS", mllib_s, vector_matrix(emb, vocab, args.dim)))

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_parquet(encoded.select("tokens"), f"{tmp}/docs", files=4)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        result = train_cbow(f"{tmp}/docs", counts, cfg)
        cbow_s = time.perf_counter() - t
    rows.append((f"torch CBOW + NS (+{write_s:.1f}s Parquet write)", cbow_s, result.vectors))

    print(f"{'method':42s} {'seconds':>8s} {'tokens/s':>10s} {'P@10 group':>11s} {'cos in':>7s} {'cos out':>8s}")
    for name, seconds, vectors in rows:
        p10, within, across = quality(vectors, groups_of)
        tps = tokens * args.epochs / seconds
        print(f"{name:42s} {seconds:8.1f} {tps:10.0f} {p10:11.3f} {within:7.3f} {across:8.3f}")
    spark.stop()


if __name__ == "__main__":
    main()
