"""Blocked top-N with heard-track exclusion vs MLlib's ``recommendForAllUsers`` vs a single-process numpy floor.

All three score the same factors (one short MLlib ALS fit on a synthetic play matrix) for every user:

* ``recommendForAllUsers(n)``: MLlib's user-block x item-block cross with a bounded queue per user; it
  cannot exclude heard tracks;
* ``top_n_unheard`` (``spotrec.weekly.topn``): track factors broadcast, one float64 GEMM per user block in
  ``mapInPandas``, heard tracks masked to ``-inf``, ``argpartition``, exact tie-breaks;
* the numpy floor: the same blocked GEMM + mask + ``argpartition`` in this process on one core
  (``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` are set to 1 before numpy loads), no Spark.

Both Spark jobs are forced with a ``noop`` write. The table prints wall seconds, core-seconds
(wall x Spark cores) and each against the floor. Run alone on a quiet machine:

    PYTHONPATH=. python benchmarks/topn_bench.py --users 40000 --tracks 10000 --rank 64 --heard 43 --n 30
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALS
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import SparkConfig
from spotrec.spark import delta_builder
from spotrec.weekly.topn import top_n_unheard


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def numpy_floor(users: np.ndarray, tracks: np.ndarray, heard: list[np.ndarray], n: int, block: int) -> float:
    """Seconds for blocked GEMM + mask + argpartition over every user, in this process."""
    start = time.perf_counter()
    tracks_t = np.ascontiguousarray(tracks.T)
    for lo in range(0, len(users), block):
        scores = users[lo : lo + block] @ tracks_t
        rows = np.repeat(np.arange(scores.shape[0]), [len(h) for h in heard[lo : lo + block]])
        scores[rows, np.concatenate(heard[lo : lo + block])] = -np.inf
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        np.take_along_axis(top, order, axis=1)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=40_000)
    p.add_argument("--tracks", type=int, default=10_000)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--heard", type=int, default=43, help="heard tracks per user (masked)")
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--block", type=int, default=2048, help="users per GEMM (top_n_unheard and the floor)")
    p.add_argument("--master", default="local[*]")
    p.add_argument("--partitions", type=int, default=0, help="user partitions (default: Spark cores)")
    a = p.parse_args()

    spark: SparkSession = delta_builder(
        SparkConfig(master=a.master, app_name="topn-bench", shuffle_partitions=max(a.partitions, 2), driver_memory="6g")
    ).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    cores = spark.sparkContext.defaultParallelism
    parts = a.partitions or cores

    rng = np.random.default_rng(7)
    heard = [np.sort(rng.choice(a.tracks, size=a.heard, replace=False)) for _ in range(a.users)]
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    pdf = pd.DataFrame(
        {
            "user": np.repeat(np.arange(a.users, dtype=np.int32), a.heard),
            "item": np.concatenate(heard).astype(np.int32),
            "rating": np.ones(a.users * a.heard),
        }
    )
    pairs = spark.createDataFrame(pdf).repartition(parts)
    model = ALS(rank=a.rank, maxIter=1, implicitPrefs=True, userCol="user", itemCol="item", seed=1).fit(pairs)
    user_f = model.userFactors.select(F.col("id").alias(C.USER_IDX), F.col("features").alias(C.FEATURES))
    track_f = model.itemFactors.select(F.col("id").alias(C.TRACK_IDX), F.col("features").alias(C.FEATURES))
    user_f, track_f = user_f.repartition(parts).cache(), track_f.cache()
    heard_df = pairs.select(F.col("user").alias(C.USER_IDX), F.col("item").alias(C.TRACK_IDX)).cache()
    print(f"factors: {user_f.count():,} users x {track_f.count():,} tracks, rank {a.rank}; {heard_df.count():,} heard")

    _, mllib_s = timed(lambda: model.recommendForAllUsers(a.n).write.format("noop").mode("overwrite").save())
    _, ours_s = timed(
        lambda: top_n_unheard(user_f, track_f, heard_df, a.n, a.block).write.format("noop").mode("overwrite").save()
    )
    u = user_f.orderBy(C.USER_IDX).toPandas()
    t = track_f.orderBy(C.TRACK_IDX).toPandas()
    users_np = np.vstack(u[C.FEATURES].to_numpy()).astype(np.float64)
    tracks_np = np.vstack(t[C.FEATURES].to_numpy()).astype(np.float64)
    by_user = dict(zip(u[C.USER_IDX].tolist(), range(len(u)), strict=True))
    ordered_heard = [heard[uid] for uid in sorted(by_user)]
    floor_s = numpy_floor(users_np, tracks_np, ordered_heard, a.n, a.block)

    print(f"\n{a.users:,} users x {a.tracks:,} tracks, rank {a.rank}, top {a.n}, {a.heard} heard/user, {cores} cores")
    print("| method | excludes heard | wall s | core-s | core-s vs floor | vs recommendForAllUsers |")
    print("|---|---|---:|---:|---:|---:|")
    for name, excl, s in (
        ("recommendForAllUsers", "no", mllib_s),
        ("top_n_unheard", "yes", ours_s),
        ("numpy floor (1 core)", "yes", floor_s),
    ):
        core_s = s * (1 if name.startswith("numpy") else cores)
        print(f"| {name} | {excl} | {s:.1f} | {core_s:.1f} | {core_s / floor_s:.1f}x | {mllib_s / s:.2f}x faster |")
    spark.stop()


if __name__ == "__main__":
    main()
