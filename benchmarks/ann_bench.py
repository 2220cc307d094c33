"""Annoy and Voyager vs exact nearest-song search: recall@k, queries per second, build time and index size.

    python benchmarks/ann_bench.py                                    # clustered, 5K/20K/100K/300K (the report)
    python benchmarks/ann_bench.py --kinds medium,loose,gaussian --sizes 5000,20000,100000   # harder data
    python benchmarks/ann_bench.py --sizes 6332 --kinds clustered,loose,gaussian \\
        --vectors-npy warehouse/_artifacts/rnn/<version>/<version>-vectors.npy   # learned vectors
    python benchmarks/ann_bench.py --metric dot --bias-std 1 --sizes 100000   # softmax retrieval space
    python benchmarks/ann_bench.py --sizes 2000 --trees 5 --search-k 100 --repeats 1   # smoke run
    python benchmarks/ann_bench.py --sizes 5000,20000,100000 --voyager-m 16 --voyager-ef 10,20,50,100,200   # Voyager

(A list starting with a negative search_k needs ``=``: ``--search-k=-1,1000``.)

Ways to answer "the k songs nearest to this taste vector" over N song vectors, all on the same queries:

- exact, one query at a time: one matrix-vector product and one ``argpartition`` per query (what a naive
  per-user UDF does);
- exact, batched through BLAS: one matrix-matrix product per block of queries, then ``argpartition`` per row
  (numpy), or ``torch.mm`` + ``torch.topk`` (torch's top-k is much faster than numpy's partition, so this is
  the strongest exact baseline we have);
- Annoy (what :mod:`spotrec.rnn.ann` serves with) for a grid of ``n_trees`` x ``search_k``. Each query
  is one ``get_nns_by_vector`` call, as in :func:`spotrec.rnn.ann.query_index`;
- Voyager (``rnn.ann_backend: voyager``, Spotify's HNSW successor to Annoy; angular and dot only) for a grid
  of ``M`` x query ``ef``, one query per call as well. The "at equal recall" table puts the fastest Annoy and
  the fastest Voyager setting reaching ``--target`` side by side.

Fairness. Every method runs on one core: BLAS and torch are limited to ``--threads`` threads (default 1) and
Annoy answers one query at a time on one thread. That is per-core throughput, which is what a Spark executor
task gets; all methods scale across tasks the same way. Vectors and queries are float32; item vectors are
normalised once before timing (that is the exact "index build"). Timings: ``--repeats`` rounds, every method
timed once per round in the same process (interleaved, so a burst of load on the shared machine hits all
methods), the median round reported. Recall@k is measured against
:func:`spotrec.rnn.ann.exact_neighbours` (so the exact rows must show 1.000: a check of the timed code).

Data. ``clustered``: 200 Gaussian clusters, within-cluster spread 0.6 of the spread of the centres (song
vectors cluster by genre); ``medium``: spread 1.0, whose Annoy recall for each ``n_trees`` / ``search_k``
matched that of the pipeline's learned CBOW vectors at their size (6,332 songs); ``loose``: spread 1.5
(clusters barely visible); ``gaussian``: one isotropic Gaussian (no structure at all: the hardest case for
space-partitioning trees). ``--vectors-npy`` adds learned song vectors (e.g. the CBOW vectors the pipeline
saves). Queries are noisy copies of random songs (noise
``--query-noise`` x the vectors' per-dimension spread), like taste vectors near what a user plays. Each data
set's difficulty is printed as its relative contrast (He, Kumar & Chang 2012, "On the difficulty of nearest
neighbor search"): mean distance from a query to all items over the distance to its k-th neighbour; the
closer to 1, the harder. ``--metric dot --bias-std S`` mimics a ``softmax`` taste model's retrieval space
(:func:`spotrec.rnn.taste_rnn.retrieval_space`): items ``[vector, bias]``, queries ``[taste, 1]``.

The summary prints, per data set, the fastest Annoy setting with recall@k >= ``--target``, its speed-up over
one-at-a-time and over the best batched exact search, the configured default (``RnnConfig.n_trees`` /
``search_k``), and the catalogue size at which Annoy overtakes batched exact search.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from annoy import AnnoyIndex
from threadpoolctl import threadpool_info, threadpool_limits  # installed with ``implicit`` (requirements-dev)

from spotrec.config import RnnConfig
from spotrec.rnn.ann import VOYAGER_METRICS, VoyagerSearcher, build_annoy_index, build_voyager_index, exact_neighbours

SPREADS = {"clustered": 0.6, "medium": 1.0, "loose": 1.5}
"""Within-cluster spread per clustered kind (centres are standard normal)."""
CLUSTERS = 200


def synthetic_vectors(kind: str, n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` float32 vectors of ``kind``: ``clustered`` / ``loose`` (around 200 centres) or ``gaussian``."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return rng.normal(size=(n, dim)).astype(np.float32)
    centres = rng.normal(size=(CLUSTERS, dim))
    labels = rng.integers(CLUSTERS, size=n)
    return (centres[labels] + SPREADS[kind] * rng.normal(size=(n, dim))).astype(np.float32)


def noisy_queries(vectors: np.ndarray, m: int, noise: float, seed: int) -> np.ndarray:
    """``m`` queries: random rows of ``vectors`` plus Gaussian noise of ``noise`` x their per-dimension std."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(vectors), size=m)
    scale = noise * float(vectors.std(axis=0).mean())
    return (vectors[picks] + scale * rng.normal(size=(m, vectors.shape[1]))).astype(np.float32)


def exact_items(vectors: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Items prepared once for exact search so that score = item @ query + bias ranks like ``metric``.

    angular: unit items (cosine; the query's norm does not change its ranking); euclidean: raw items with
    bias -|v|^2 / 2 (|q - v|^2 = |q|^2 - 2 (q.v - |v|^2 / 2)); dot: raw items.
    """
    if metric == "angular":
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(unit, dtype=np.float32), np.zeros(len(vectors), dtype=np.float32)
    if metric == "euclidean":
        return vectors, (-0.5 * (vectors.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32)
    if metric == "dot":
        return vectors, np.zeros(len(vectors), dtype=np.float32)
    raise ValueError(f"exact search supports angular, euclidean and dot, not {metric!r}")


def exact_one_at_a_time(items: np.ndarray, bias: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` per query with one matrix-vector product and one ``argpartition`` each."""
    n = len(items)
    out = np.empty((len(queries), k), dtype=np.int64)
    for j, q in enumerate(queries):
        scores = items @ q + bias
        top = np.argpartition(scores, n - k)[n - k :]
        out[j] = top[np.argsort(-scores[top])]
    return out


def exact_batched_numpy(items: np.ndarray, bias: np.ndarray, queries: np.ndarray, k: int, block: int) -> np.ndarray:
    """Top-``k`` per query: one BLAS matrix-matrix product per ``block`` queries, ``argpartition`` per row."""
    n = len(items)
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), block):
        scores = queries[s : s + block] @ items.T + bias
        top = np.argpartition(scores, n - k, axis=1)[:, n - k :]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[s : s + block] = np.take_along_axis(top, order, axis=1)
    return out


def exact_batched_torch(
    items: torch.Tensor, bias: torch.Tensor, queries: torch.Tensor, k: int, block: int
) -> np.ndarray:
    """Top-``k`` per query: ``torch.mm`` per ``block`` queries, then ``torch.topk`` (sorted)."""
    out = []
    for s in range(0, len(queries), block):
        out.append(torch.topk(queries[s : s + block] @ items.T + bias, k, dim=1).indices)
    return torch.cat(out).numpy()


def annoy_search(index: AnnoyIndex, queries: np.ndarray, k: int, search_k: int) -> np.ndarray:
    """Top-``k`` per query from Annoy, one ``get_nns_by_vector`` call per query (as the pipeline does)."""
    return np.array([index.get_nns_by_vector(q.tolist(), k, search_k=search_k) for q in queries])


def voyager_search(index: VoyagerSearcher, queries: np.ndarray, k: int, ef: int) -> np.ndarray:
    """Top-``k`` per query from Voyager, one query per call (as :func:`spotrec.rnn.ann.query_index` asks)."""
    return np.array([index.get_nns_by_vector(q.tolist(), k, search_k=ef)[0] for q in queries])


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the true top-k found, per query."""
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def relative_contrast(items: np.ndarray, bias: np.ndarray, queries: np.ndarray, k: int, metric: str) -> float:
    """Mean over queries of (mean distance to all items) / (distance to the k-th nearest item)."""
    scores = queries @ items.T + bias
    if metric == "angular":
        qn = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        dist = np.sqrt(np.maximum(2.0 - 2.0 * (qn @ items.T), 0.0))
    elif metric == "euclidean":
        dist = np.sqrt(np.maximum((queries**2).sum(axis=1, keepdims=True) - 2.0 * scores, 0.0))
    else:  # dot: no distance; use the score gap to the best possible as a stand-in
        dist = scores.max() - scores
    kth = np.sort(dist, axis=1)[:, k - 1]
    return float(np.mean(dist.mean(axis=1) / np.maximum(kth, 1e-12)))


@dataclass
class Method:
    """One timed way of answering the queries."""

    name: str
    n_trees: int | None
    search_k: int | None
    run: Callable[[], np.ndarray]
    n_queries: int
    seconds: list[float] = field(default_factory=list)
    recall: float = float("nan")
    build_s: float = float("nan")
    size_mb: float = float("nan")
    backend: str = "exact"
    """``exact``, ``annoy`` or ``voyager`` (whose ``search_k`` column is its query ``ef``, ``n_trees`` its M)."""

    @property
    def qps(self) -> float:
        """Queries per second of the median round."""
        return self.n_queries / statistics.median(self.seconds)


@dataclass
class Summary:
    """Headline figures of one data set."""

    kind: str
    n: int
    contrast: float
    single_qps: float
    batched_qps: float
    batched_name: str
    best: Method | None
    default: Method | None
    best_voyager: Method | None = None


def bench_one(
    kind: str, vectors: np.ndarray, args: argparse.Namespace, default: tuple[int, int], tmp: str
) -> tuple[list[Method], Summary]:
    """Time every method on one data set; return the rows and the headline figures."""
    queries = noisy_queries(vectors, args.queries, args.query_noise, args.seed + 1)
    if args.bias_std > 0:  # a softmax model's retrieval space: items [vector, bias], queries [taste, 1]
        rng = np.random.default_rng(args.seed + 2)
        vectors = np.hstack([vectors, args.bias_std * rng.normal(size=(len(vectors), 1))]).astype(np.float32)
        queries = np.hstack([queries, np.ones((len(queries), 1), dtype=np.float32)])
    n, dim, k = len(vectors), vectors.shape[1], args.k
    items, bias = exact_items(vectors, args.metric)
    items_t, bias_t, queries_t = torch.from_numpy(items), torch.from_numpy(bias), torch.from_numpy(queries)
    # Ground truth from the library's reference implementation, 100 queries at a time (bounded memory).
    truth = np.concatenate(
        [exact_neighbours(vectors, queries[s : s + 100], k, args.metric) for s in range(0, len(queries), 100)]
    )
    contrast = relative_contrast(items, bias, queries[:100], k, args.metric)
    n_single = min(args.queries, args.single_queries)
    block = args.block

    methods = [
        Method(
            f"exact, one at a time ({n_single} q)",
            None,
            None,
            lambda: exact_one_at_a_time(items, bias, queries[:n_single], k),
            n_single,
        ),
        Method(
            f"exact, batched numpy (block {block})",
            None,
            None,
            lambda: exact_batched_numpy(items, bias, queries, k, block),
            len(queries),
        ),
        Method(
            f"exact, batched torch (block {block})",
            None,
            None,
            lambda: exact_batched_torch(items_t, bias_t, queries_t, k, block),
            len(queries),
        ),
    ]
    trees = sorted({int(x) for x in args.trees.split(",")} | {default[0]})
    indexes = []
    for n_trees in trees:
        path = os.path.join(tmp, f"{kind}-{n}-{n_trees}.ann")
        t = time.perf_counter()
        build_annoy_index(vectors, path, args.metric, n_trees, seed=args.seed)
        build_s = time.perf_counter() - t
        index = AnnoyIndex(dim, args.metric)  # type: ignore[arg-type]
        index.load(path)
        indexes.append(index)
        search_ks = sorted(
            {int(x) for x in args.search_k.split(",")} | ({default[1]} if n_trees == default[0] else set())
        )
        for search_k in search_ks:
            m = Method(
                f"annoy n_trees={n_trees} search_k={search_k}",
                n_trees,
                search_k,
                functools.partial(annoy_search, index, queries, k, search_k),
                len(queries),
            )
            m.build_s, m.size_mb, m.backend = build_s, os.path.getsize(path) / 1e6, "annoy"
            methods.append(m)
        print(f"  built n_trees={n_trees}: {build_s:.1f}s, {os.path.getsize(path) / 1e6:.0f} MB", flush=True)
    voyagers = []
    if args.metric in VOYAGER_METRICS and args.voyager_m:
        for m_links in (int(x) for x in args.voyager_m.split(",")):
            path = os.path.join(tmp, f"{kind}-{n}-{m_links}.voy")
            t = time.perf_counter()
            build_voyager_index(vectors, path, args.metric, m=m_links, seed=args.seed)
            build_s = time.perf_counter() - t
            searcher = VoyagerSearcher(path)
            voyagers.append(searcher)
            for ef in sorted({max(int(x), k) for x in args.voyager_ef.split(",")}):
                m = Method(
                    f"voyager M={m_links} ef={ef}",
                    m_links,
                    ef,
                    functools.partial(voyager_search, searcher, queries, k, ef),
                    len(queries),
                )
                m.build_s, m.size_mb, m.backend = build_s, os.path.getsize(path) / 1e6, "voyager"
                methods.append(m)
            print(f"  built voyager M={m_links}: {build_s:.1f}s, {os.path.getsize(path) / 1e6:.0f} MB", flush=True)

    for r in range(args.repeats):
        for m in methods:
            t = time.perf_counter()
            found = m.run()
            m.seconds.append(time.perf_counter() - t)
            if r == 0:
                m.recall = recall(found, truth[: len(found)])
        print(f"  round {r + 1}/{args.repeats} done", flush=True)
    for m in methods[:3]:  # the timed exact code must agree with the reference (float rounding may swap ties)
        if m.recall < 0.999:
            raise AssertionError(f"{m.name} disagrees with exact_neighbours: recall {m.recall:.4f}")
    for index in indexes:
        index.unload()

    single, batched = methods[0], max(methods[1:3], key=lambda m: m.qps)
    annoys = [m for m in methods if m.backend == "annoy"]
    good = [m for m in annoys if m.recall >= args.target]
    best = max(good, key=lambda m: m.qps, default=None)
    dflt = next((m for m in annoys if (m.n_trees, m.search_k) == default), None)
    good_voyager = [m for m in methods if m.backend == "voyager" and m.recall >= args.target]
    best_voyager = max(good_voyager, key=lambda m: m.qps, default=None)
    return methods, Summary(kind, n, contrast, single.qps, batched.qps, batched.name, best, dflt, best_voyager)


def print_rows(kind: str, n: int, contrast: float, methods: list[Method], k: int, default: tuple[int, int]) -> None:
    """The per-method table of one data set."""
    single_qps, batched_qps = methods[0].qps, max(methods[1].qps, methods[2].qps)
    print(f"\n{kind}, {n:,} vectors, relative contrast {contrast:.2f}")
    print(f"| method | recall@{k} | queries/s | x one-at-a-time | x best batched | build s | index MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for m in methods:
        mark = " (default)" if m.backend == "annoy" and (m.n_trees, m.search_k) == default else ""
        build = "" if math.isnan(m.build_s) else f"{m.build_s:.1f}"
        size = "" if math.isnan(m.size_mb) else f"{m.size_mb:.0f}"
        print(
            f"| {m.name}{mark} | {m.recall:.3f} | {m.qps:,.0f} | {m.qps / single_qps:.1f} | "
            f"{m.qps / batched_qps:.2f} | {build} | {size} |"
        )


def print_summary(summaries: list[Summary], target: float, k: int, default: tuple[int, int]) -> None:
    """Per data set: exact throughputs, the fastest Annoy setting at the recall target, the default; crossover."""
    print(f"\nSummary (recall@{k} target {target}; default n_trees={default[0]} search_k={default[1]})")
    print(
        "| data | N | contrast | one-at-a-time q/s | best batched q/s | fastest Annoy >= target | recall | q/s "
        "| x one-at-a-time | x batched | default recall | default q/s | default x one-at-a-time |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        if s.best is None:
            best = "none | | | | "
        else:
            b = s.best
            best = (
                f"trees {b.n_trees}, search_k {b.search_k} | {b.recall:.3f} | {b.qps:,.0f} | "
                f"{b.qps / s.single_qps:.1f} | {b.qps / s.batched_qps:.2f}"
            )
        d = s.default
        dflt = "| | " if d is None else f"{d.recall:.3f} | {d.qps:,.0f} | {d.qps / s.single_qps:.1f}"
        print(
            f"| {s.kind} | {s.n:,} | {s.contrast:.2f} | {s.single_qps:,.0f} | {s.batched_qps:,.0f} | {best} | {dflt} |"
        )
    print(f"\nAt equal recall (recall@{k} >= {target}): the fastest setting of each, one query per call, one core")
    cols = ["data", "N", "exact batched q/s", "Annoy setting", "recall", "q/s", "Voyager setting", "recall", "q/s"]
    print("| " + " | ".join([*cols, "Voyager / Annoy"]) + " |")
    print("|---|---:|---:|---|---:|---:|---|---:|---:|---:|")
    for s in summaries:
        a, v = s.best, s.best_voyager
        a_txt = (
            "none | | " if a is None else f"trees {a.n_trees}, search_k {a.search_k} | {a.recall:.3f} | {a.qps:,.0f}"
        )
        v_txt = "none | | " if v is None else f"M {v.n_trees}, ef {v.search_k} | {v.recall:.3f} | {v.qps:,.0f}"
        ratio = f"{v.qps / a.qps:.2f}" if a is not None and v is not None else ""
        print(f"| {s.kind} | {s.n:,} | {s.batched_qps:,.0f} | {a_txt} | {v_txt} | {ratio} |")
    for kind in dict.fromkeys(s.kind for s in summaries):
        rows = sorted((s for s in summaries if s.kind == kind), key=lambda s: s.n)
        ratios = [(s.n, s.best.qps / s.batched_qps if s.best else 0.0) for s in rows]
        text = ", ".join(f"{n:,}: {r:.2f}x" for n, r in ratios)
        print(f"{kind}: fastest Annoy at recall >= {target} / best batched exact, by N: {text}")
        wins = [n for n, r in ratios if r > 1.0]
        if not wins:
            print(f"{kind}: batched exact search is faster at every size measured")
            continue
        first = wins[0]
        i = [n for n, _ in ratios].index(first)
        if i == 0:
            print(f"{kind}: Annoy is already faster than batched exact at the smallest size, {first:,}")
            continue
        (n0, r0), (n1, r1) = ratios[i - 1], ratios[i]
        if r0 > 0:  # log-log interpolation of the speed ratio between the bracketing sizes
            cross = math.exp(
                math.log(n0) + (math.log(n1) - math.log(n0)) * (0 - math.log(r0)) / (math.log(r1) - math.log(r0))
            )
            print(
                f"{kind}: Annoy overtakes batched exact between {n0:,} and {n1:,} vectors (~{cross:,.0f} interpolated)"
            )
        else:
            print(f"{kind}: Annoy overtakes batched exact between {n0:,} and {n1:,} vectors")


def main() -> None:
    """Parse arguments, run every data set, print the tables and the summary."""
    cfg = RnnConfig()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000,100000,300000", help="comma-separated catalogue sizes")
    parser.add_argument("--kinds", default="clustered", help="comma-separated: clustered, medium, loose, gaussian")
    parser.add_argument("--vectors-npy", default=None, help="also run on these vectors (.npy, one row per song)")
    parser.add_argument("--dim", type=int, default=cfg.vector_size)
    parser.add_argument("--metric", default=cfg.annoy_metric, choices=["angular", "euclidean", "dot"])
    parser.add_argument(
        "--bias-std",
        type=float,
        default=0.0,
        help="append a N(0, bias-std) song bias column to items and 1 to queries (use with --metric dot)",
    )
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (recall@k)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single-queries", type=int, default=200, help="queries timed one at a time (it is slow)")
    parser.add_argument("--query-noise", type=float, default=0.25)
    parser.add_argument("--trees", default="5,10,25,50,100", help="comma-separated n_trees values")
    parser.add_argument("--search-k", default="-1,200,500,1000,2000,5000,10000,20000", help="comma-separated search_k")
    parser.add_argument("--block", type=int, default=64, help="queries per matrix product in batched exact search")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads for exact search")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds; the median is reported")
    parser.add_argument("--target", type=float, default=0.95, help="recall@k an Annoy setting must reach")
    parser.add_argument("--voyager-m", default="12,16,32", help="Voyager M values (graph links); empty: skip Voyager")
    parser.add_argument("--voyager-ef", default="10,20,50,100,200,500", help="Voyager query ef values")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    default = (cfg.n_trees, cfg.search_k)
    torch.set_num_threads(args.threads)
    data: list[tuple[str, Callable[[], np.ndarray]]] = [
        (kind, functools.partial(synthetic_vectors, kind, n, args.dim, args.seed))
        for kind in args.kinds.split(",")
        for n in (int(x) for x in args.sizes.split(","))
    ]
    if args.vectors_npy:
        data.append(("learned", lambda: np.ascontiguousarray(np.load(args.vectors_npy), dtype=np.float32)))

    summaries = []
    with threadpool_limits(limits=args.threads, user_api="blas"), tempfile.TemporaryDirectory() as tmp:
        blas = ", ".join(
            f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info() if i["user_api"] == "blas"
        )
        print(
            f"metric {args.metric}, top-{args.k}, {args.queries} queries, median of {args.repeats} rounds; "
            f"threads: BLAS ({blas}), torch {torch.get_num_threads()}, Annoy 1 (one query at a time); "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        for kind, make in data:
            vectors = make()
            print(f"{kind}: {len(vectors):,} x {vectors.shape[1]} ...", flush=True)
            methods, summary = bench_one(kind, vectors, args, default, tmp)
            print_rows(kind, summary.n, summary.contrast, methods, args.k, default)
            summaries.append(summary)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print_summary(summaries, args.target, args.k, default)


if __name__ == "__main__":
    main()
