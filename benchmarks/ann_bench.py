"""Annoy vs exact nearest-song search: recall@10 and queries per second.

Three ways to answer "the 10 songs nearest to this taste vector" over N song vectors:

- exact, one query at a time (a matrix-vector product per query: what a naive per-user UDF does);
- exact, batched (one BLAS matrix-matrix product per block of queries: what a per-partition pandas UDF can do);
- Annoy for several ``n_trees`` / ``search_k`` settings (what ``spotrec.discovery.ann`` serves with).

Vectors are clustered Gaussians (like song vectors: genres are clusters) and queries are noisy copies of
random songs. Recall@10 is measured against the exact answer.

Usage: ``python benchmarks/ann_bench.py [--n 100000] [--dim 64] [--queries 1000]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from annoy import AnnoyIndex

from spotrec.discovery.ann import build_annoy_index, exact_neighbours

K = 10


def clustered_vectors(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """``n`` unit-ish vectors around ``clusters`` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    labels = rng.integers(clusters, size=n)
    return (centres[labels] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the true top-k found, per query."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--trees", default="10,50", help="comma-separated n_trees values")
    parser.add_argument("--search-k", default="-1,2000,10000", help="comma-separated search_k values")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    vectors = clustered_vectors(args.n, args.dim, clusters=200, seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    picks = rng.integers(args.n, size=args.queries)
    queries = (vectors[picks] + 0.3 * rng.normal(size=(args.queries, args.dim))).astype(np.float32)
    print(f"{args.n} vectors x {args.dim} dims, {args.queries} queries, top-{K}, angular metric")

    rows: list[tuple[str, float, float, str]] = []
    truth = exact_neighbours(vectors, queries, K)  # warm-up (BLAS threads, page faults) and ground truth
    batched_s = float("inf")
    for _ in range(3):  # best of three: timings on a shared machine are noisy
        t = time.perf_counter()
        exact_neighbours(vectors, queries, K)
        batched_s = min(batched_s, time.perf_counter() - t)
    rows.append(("exact, batched BLAS (all queries at once)", 1.0, args.queries / batched_s, "-"))

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    n_single = min(args.queries, 200)
    t = time.perf_counter()
    for q in queries[:n_single]:
        scores = unit @ (q / np.linalg.norm(q))
        top = np.argpartition(-scores, K)[:K]
        top[np.argsort(-scores[top])]
    single_s = time.perf_counter() - t
    rows.append((f"exact, one query at a time ({n_single} queries)", 1.0, n_single / single_s, "-"))

    with tempfile.TemporaryDirectory() as tmp:
        for n_trees in (int(x) for x in args.trees.split(",")):
            path = os.path.join(tmp, f"bench-{n_trees}.ann")
            t = time.perf_counter()
            build_annoy_index(vectors, path, "angular", n_trees, seed=args.seed)
            build_s = time.perf_counter() - t
            index = AnnoyIndex(args.dim, "angular")
            index.load(path)
            size_mb = os.path.getsize(path) / 1e6
            for search_k in (int(x) for x in args.search_k.split(",")):
                t = time.perf_counter()
                found = np.array([index.get_nns_by_vector(q.tolist(), K, search_k=search_k) for q in queries])
                query_s = time.perf_counter() - t
                rows.append(
                    (
                        f"annoy n_trees={n_trees} search_k={search_k}",
                        recall(found, truth),
                        args.queries / query_s,
                        f"build {build_s:.1f}s, {size_mb:.0f} MB",
                    )
                )
            index.unload()

    print(f"{'method':48s} {'recall@10':>10s} {'queries/s':>12s}  notes")
    for name, rec, qps, note in rows:
        print(f"{name:48s} {rec:10.3f} {qps:12.0f}  {note}")
    batched_qps = rows[0][2]
    slower = [r[0].removeprefix("annoy ") for r in rows if r[0].startswith("annoy") and r[2] < batched_qps]
    if slower:
        print(f"batched exact search (exact answers) is faster than Annoy at: {', '.join(slower)}")
    best = max((r for r in rows if r[0].startswith("annoy") and r[1] >= 0.9), key=lambda r: r[2], default=None)
    if best is not None and best[2] > batched_qps:
        print(f"fastest Annoy setting with recall >= 0.9: {best[0]} ({best[2] / batched_qps:.1f}x batched exact)")
    else:
        print("no Annoy setting with recall >= 0.9 is faster than batched exact search at this size")


if __name__ == "__main__":
    main()
