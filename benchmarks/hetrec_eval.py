"""Discover Weekly models on real listening data: HetRec 2011 Last.fm (1,892 users x 17,632 artists).

    python benchmarks/hetrec_eval.py                       # needs ../shared/data/lastfm-hetrec-2k
    python benchmarks/hetrec_eval.py --path /data/hetrec/user_artists.dat --seeds 42,43

HetRec has play counts but no timestamps, so the split is :func:`spotrec.evaluation.split.holdout_split`:
per user, a pseudo-random 20% of their artists are held out (at least one artist stays in train); the
held-out artists are the relevant items, and every model excludes what the user played in train. Play
counts become confidence with ``log1p`` (:func:`spotrec.features.interactions.interactions_from_counts`),
as the pipeline does for this format. The "track" of the Discover Weekly models is an artist here.

Compared in one process, on the same split, with one metric implementation
(:func:`spotrec.evaluation.metrics.ranking_metrics`): most-popular unheard, item co-occurrence, Spark
MLlib ALS (a small grid, so no setting is privileged), and the ``implicit`` library's ALS given exactly
MLlib's confidence ``1 + alpha * r`` (see ``benchmarks/als_bench.py`` for that mapping) at a few
regularisations. Prints a table per seed and the mean over seeds.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

from als_bench import World, run_implicit, with_ids
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import SparkConfig, WeeklyConfig
from spotrec.evaluation.baselines import CooccurrenceRecommender, PopularityRecommender
from spotrec.evaluation.harness import evaluate
from spotrec.evaluation.split import holdout_split
from spotrec.features.interactions import extend_index, interactions_from_counts, with_indexes
from spotrec.sources import read_play_counts
from spotrec.spark import get_spark
from spotrec.weekly.als import make_recommender

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "lastfm-hetrec-2k" / "user_artists.dat"
K = 10


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(DEFAULT_PATH), help="HetRec user_artists.dat")
    parser.add_argument("--seeds", default="42", help="comma-separated holdout seeds")
    parser.add_argument("--ranks", default="8,32,64")
    parser.add_argument("--regs", default="0.05,0.2")
    parser.add_argument("--alphas", default="1,10")
    parser.add_argument("--implicit-regs", default="0.5,2,8")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--solvers", default="mllib,cg", help="weekly.solver values to evaluate (comma-separated)")
    args = parser.parse_args()
    if not Path(args.path).exists():
        raise SystemExit(f"HetRec file not found: {args.path} (pass --path to user_artists.dat)")

    spark = get_spark(
        SparkConfig(master="local[*]", shuffle_partitions=4, conf={"spark.ui.showConsoleProgress": "false"})
    )
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir("/tmp/spotrec-hetrec-checkpoints")
    counts = read_play_counts(spark, "hetrec", args.path)
    interactions = interactions_from_counts(counts, transform="log1p")
    users = extend_index(None, interactions.select(C.USER_ID), C.USER_ID, C.USER_IDX)
    items = extend_index(None, interactions.select(C.TRACK_ID), C.TRACK_ID, C.TRACK_IDX)
    indexed = with_indexes(interactions, users, items).cache()
    n_users, n_items, n_pairs = (
        users.count(),
        items.count(),
        indexed.count(),
    )
    print(f"HetRec Last.fm: {n_users:,} users, {n_items:,} artists, {n_pairs:,} (user, artist) play counts")

    grid = [
        WeeklyConfig(solver=s, rank=r, reg_param=lam, alpha=a, max_iter=args.iters, num_blocks=4, seed=7)
        for s, r, lam, a in itertools.product(
            args.solvers.split(","), [int(x) for x in args.ranks.split(",")], _floats(args.regs), _floats(args.alphas)
        )
    ]
    table: dict[str, list[dict[str, Any]]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        train, test = holdout_split(indexed, fraction=0.2, seed=seed)
        train = train.cache()
        relevant = test.select(C.USER_ID, C.TRACK_ID).cache()
        print(f"\nseed {seed}: {train.count():,} train pairs, {relevant.count():,} held out")
        models: list[Any] = [PopularityRecommender(), CooccurrenceRecommender()]
        for cfg in grid:
            als = make_recommender(cfg)
            als.name = f"spark {cfg.solver} r{cfg.rank} l{cfg.reg_param:g} a{cfg.alpha:g}"
            models.append(als)
        for model in models:
            start = time.perf_counter()
            (result,) = evaluate([model], train, relevant, k=K, n=K)
            seconds = time.perf_counter() - start
            table.setdefault(result.model, []).append({**result.metrics, "seconds": seconds})
            print(f"  {result.model:<28} ndcg@{K} {result.metrics['ndcg']:.4f}  map@{K} {result.metrics['map']:.4f}")

        # implicit on the same train / held-out pairs (string ids rebuilt from the indexes).
        pdf = train.select(C.USER_IDX, C.TRACK_IDX, F.col(C.CONFIDENCE).alias("rating")).toPandas()
        test_pdf = test.select(C.USER_IDX, C.TRACK_IDX).toPandas()
        world = World(pdf, test_pdf, n_users, n_items)
        relevant_idx = with_ids(test.select(C.USER_IDX, C.TRACK_IDX)).select(C.USER_ID, C.TRACK_ID).cache()
        for cfg, lam in itertools.product(
            [c for c in grid if c.reg_param == grid[0].reg_param and c.solver == grid[0].solver],
            _floats(args.implicit_regs),
        ):
            row = run_implicit(spark, world, cfg, lam, relevant_idx, K)
            name = f"implicit r{cfg.rank} l{lam:g} a{cfg.alpha:g}"
            table.setdefault(name, []).append({**row, "seconds": row["fit_s"] + row["topn_s"]})
            print(f"  {name:<28} ndcg@{K} {row['ndcg']:.4f}  map@{K} {row['map']:.4f}")
        train.unpersist()
        relevant.unpersist()
        relevant_idx.unpersist()

    print(f"\nMean over seeds {args.seeds} (k = {K}; relevant = held-out artists the user never played in train)")
    print(f"| model | NDCG@{K} | MAP@{K} | precision@{K} | recall@{K} | hit@{K} | coverage | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows in table.items():

        def mean(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return sum(float(r.get(key, float("nan"))) for r in rows) / len(rows)

        print(
            f"| {name} | {mean('ndcg'):.4f} | {mean('map'):.4f} | {mean('precision'):.4f} | {mean('recall'):.4f} "
            f"| {mean('hit_rate'):.4f} | {mean('coverage'):.4f} | {mean('seconds'):.1f} |"
        )


if __name__ == "__main__":
    main()
