"""Spark implicit ALS (MLlib and the CG solver) vs the ``implicit`` library's CPU ALS, and blocked top-N.

    python benchmarks/als_bench.py                     # 40k users x 10k tracks, ~2.1M interactions, rank 64
    python benchmarks/als_bench.py --ranks 64,128 --loss-iters 1,2,3,5,10   # MLlib vs CG vs implicit (docs)
    python benchmarks/als_bench.py --users 400000 --ranks 64   # the 10x larger matrix (~21M interactions)
    python benchmarks/als_bench.py --regs 0.1,0.2 --implicit-regs 2,4,8,16   # best-of-grid (the run in the report)
    python benchmarks/als_bench.py --users 2000 --items 500 --iters 3   # quick smoke run
    python benchmarks/als_bench.py --kernel --ranks 64,128 --regs 0.2   # the CG kernel alone vs implicit, 1 thread

One process, one synthetic matrix, one split, one metric implementation
(:func:`spotrec.evaluation.metrics.ranking_metrics`) for both libraries. Prints a table: fit seconds, top-10
seconds, NDCG@10, MAP@10, precision@10, recall@10; then Spark's NDCG@10 relative to implicit's.

The matrix: ``groups`` taste groups; each track belongs to one group and has a Zipf popularity inside it;
each user belongs to one group and draws ``per_user`` plays, ``own_share`` of them from its group's tracks
and the rest from all tracks by popularity; repeated draws are repeated plays, and a (user, track) pair's
rating is ``log1p(plays)``. Per user, ``test_fraction`` of the tracks are held out (seeded); those held-out
tracks are the relevant items (the user never played them in train).

Making the two libraries solve the same problem:

- Confidence. MLlib: c = 1 + alpha * r (p = 1 for r > 0). ``implicit`` (0.7) uses the matrix value v
  itself as the confidence (its solver adds (v - 1) * y y^T on top of Y^T Y, and v * y to the right-hand
  side) after multiplying by its own ``alpha``. So implicit gets the matrix ``1 + alpha * r`` with its
  ``alpha=1``: exactly MLlib's c.
- Regularisation. MLlib is ALS-WR: user u's system gets lambda * n_u (n_u = the user's positive ratings),
  track i's gets lambda * n_i. ``implicit`` adds a constant lambda'. No constant equals a per-row scaling;
  the default maps each MLlib lambda to lambda' = lambda * mean(n_u) over training users (the user side
  dominates the ranking) and also runs lambda' = lambda unscaled, so the effect of the mapping is visible.
  Item-side regularisation has no equivalent: MLlib's lambda * n_i grows with a track's popularity.
  ``--regs`` / ``--implicit-regs`` sweep small grids; the comparison is best-of-grid on each side (both
  chosen on the same held-out split, so both figures are equally optimistic).
- Same rank, iterations, seed-controlled init (different RNGs, so not identical factors); implicit uses its
  default conjugate-gradient solver (3 CG steps per solve), MLlib exact Cholesky, the CG solver
  (``weekly.solver: cg``, :mod:`spotrec.weekly.cg`) ``--cg-steps`` CG steps on MLlib's exact objective.
- ``loss`` is that objective (:func:`spotrec.weekly.cg.implicit_objective`, MLlib's ALS-WR form) of the
  fitted factors; ``--loss-iters`` refits each Spark solver with maxIter = 1, 2, ... (both are
  deterministic, so the t-iteration fit is the t-th iterate) and prints the objective per iteration.

Top-N timing: :func:`spotrec.weekly.topn.top_n_unheard` (exact, heard tracks excluded) vs MLlib's
``recommendForAllUsers`` (no exclusion), both for every training user at N = 10, both forced with the
``noop`` sink so only computing counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from threadpoolctl import threadpool_limits

from spotrec import columns as C
from spotrec.config import SparkConfig, WeeklyConfig
from spotrec.evaluation.metrics import ranking_metrics
from spotrec.spark import get_spark
from spotrec.weekly.als import AlsRecommender, make_recommender
from spotrec.weekly.cg import CgRecommender, cg_rows, implicit_objective, initial_factors
from spotrec.weekly.topn import top_n_unheard


@dataclasses.dataclass
class World:
    train: pd.DataFrame
    """user_idx, track_idx, rating."""
    test: pd.DataFrame
    """user_idx, track_idx (held out; never in train for that user)."""
    users: int
    items: int


def synthetic_matrix(
    users: int, items: int, per_user: int, groups: int, own_share: float, test_fraction: float, seed: int
) -> World:
    """The planted-taste play matrix and its per-user holdout split (see the module docstring)."""
    rng = np.random.default_rng(seed)
    item_group = rng.integers(0, groups, size=items)
    pop = 1.0 / np.arange(1, items + 1) ** 0.9
    pop = pop[rng.permutation(items)]
    global_p = pop / pop.sum()
    user_group = rng.integers(0, groups, size=users)
    draws_user = np.repeat(np.arange(users), per_user)
    from_own = rng.random(draws_user.size) < own_share
    draws_item = rng.choice(items, size=draws_user.size, p=global_p)
    for g in range(groups):
        members = np.flatnonzero(item_group == g)
        p = pop[members] / pop[members].sum()
        mask = from_own & (user_group[draws_user] == g)
        draws_item[mask] = rng.choice(members, size=int(mask.sum()), p=p)
    pair, plays = np.unique(draws_user.astype(np.int64) * items + draws_item, return_counts=True)
    u, i = pair // items, pair % items
    # Per-user holdout: random key per pair, sorted within user; the first round(n * f) pairs are test.
    key = rng.random(pair.size)
    order = np.lexsort((key, u))
    u, i, plays = u[order], i[order], plays[order]
    starts = np.searchsorted(u, np.arange(users))
    counts = np.bincount(u, minlength=users)
    pos = np.arange(u.size) - starts[u]
    n_test = np.minimum(np.floor(counts * test_fraction + 0.5), counts - 1)[u]
    is_test = pos < n_test
    train = pd.DataFrame(
        {
            "user_idx": u[~is_test].astype("int32"),
            "track_idx": i[~is_test].astype("int32"),
            "rating": np.log1p(plays[~is_test]).astype("float64"),
        }
    )
    test = pd.DataFrame({"user_idx": u[is_test].astype("int32"), "track_idx": i[is_test].astype("int32")})
    return World(train, test, users, items)


def with_ids(df: DataFrame) -> DataFrame:
    """Add the string ids the Recommender protocol speaks (u<idx>, t<idx>)."""
    return df.withColumn(C.USER_ID, F.concat(F.lit("u"), F.col(C.USER_IDX).cast("string"))).withColumn(
        C.TRACK_ID, F.concat(F.lit("t"), F.col(C.TRACK_IDX).cast("string"))
    )


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_spark(
    spark: SparkSession,
    world: World,
    cfg: WeeklyConfig,
    relevant: DataFrame,
    k: int,
    block_size: int,
    *,
    time_mllib_topn: bool = True,
) -> dict[str, Any]:
    train = with_ids(spark.createDataFrame(world.train).withColumnRenamed("rating", C.CONFIDENCE)).cache()
    train.count()
    als = make_recommender(cfg, block_size=block_size)

    def fit() -> None:
        als.fit(train)
        for frame in factor_frames(als):
            frame.write.format("noop").mode("overwrite").save()

    _, fit_s = timed(fit)
    users_f, items_f = (frame.cache() for frame in factor_frames(als))
    loss = objective(world, cfg, users_f, items_f)
    heard = train.select(C.USER_IDX, C.TRACK_IDX)
    _, topn_s = timed(
        lambda: top_n_unheard(users_f, items_f, heard, k, block_size).write.format("noop").mode("overwrite").save()
    )
    mllib_s = float("nan")
    if time_mllib_topn and isinstance(als, AlsRecommender):
        _, mllib_s = timed(lambda: als.model.recommendForAllUsers(k).write.format("noop").mode("overwrite").save())
    recs = with_ids(top_n_unheard(users_f, items_f, heard, k, block_size)).cache()
    recs.count()
    metrics = ranking_metrics(recs, relevant, k)
    recs.unpersist()
    train.unpersist()
    if isinstance(als, CgRecommender):
        als.unpersist()
    return {"fit_s": fit_s, "topn_s": topn_s, "mllib_topn_s": mllib_s, "loss": loss, **metrics}


def factor_frames(als: AlsRecommender | CgRecommender) -> tuple[DataFrame, DataFrame]:
    """(user_idx, features) and (track_idx, features) of either solver."""
    return als.user_factors_frame(), als.track_factors_frame()


def _dense(frame: DataFrame, key: str, size: int, rank: int) -> np.ndarray:
    pdf = frame.toPandas()
    out = np.zeros((size, rank))
    if len(pdf):
        out[pdf[key].to_numpy()] = np.stack(pdf["features"].to_numpy())
    return out


def objective(world: World, cfg: WeeklyConfig, users_f: DataFrame, items_f: DataFrame) -> float:
    """MLlib's implicit-ALS objective of the fitted factors (collected: a benchmark-sized matrix)."""
    t = world.train
    x = _dense(users_f, C.USER_IDX, world.users, cfg.rank)
    y = _dense(items_f, C.TRACK_IDX, world.items, cfg.rank)
    u, i, r = t["user_idx"].to_numpy(), t["track_idx"].to_numpy(), t["rating"].to_numpy()
    return implicit_objective(u, i, r, x, y, cfg.alpha, cfg.reg_param)


def loss_curve(spark: SparkSession, world: World, cfg: WeeklyConfig, iters: list[int], implicit_reg: float) -> None:
    """The objective after t iterations of MLlib (t-iteration refits: MLlib has no per-iteration hook), of CG
    (one fit, read through ``on_iteration``) and of ``implicit`` (one fit, read through its callback; its
    factors scored with MLlib's ALS-WR objective, which is not the one it minimises), one row per t."""
    train = with_ids(spark.createDataFrame(world.train).withColumnRenamed("rating", C.CONFIDENCE)).cache()
    print(f"\nobjective per iteration, rank {cfg.rank}, regParam {cfg.reg_param:g}, cg_steps {cfg.cg_steps}")
    last = max(iters)
    cg_loss: dict[int, float] = {}

    def record(t: int, model: CgRecommender) -> None:
        if t in iters:
            cg_loss[t] = objective(world, cfg, *factor_frames(model))

    cg = CgRecommender(cfg.model_copy(update={"solver": "cg", "max_iter": last})).fit(train, on_iteration=record)
    cg.unpersist()
    implicit_loss = implicit_objective_curve(world, cfg.model_copy(update={"max_iter": last}), implicit_reg, iters)
    print(f"| iteration | MLlib loss | CG loss | CG / MLlib | implicit (lambda'={implicit_reg:g}) loss |")
    print("|---:|---:|---:|---:|---:|")
    for t in iters:
        c = cfg.model_copy(update={"solver": "mllib", "max_iter": t})
        mllib = objective(world, c, *factor_frames(AlsRecommender(c).fit(train)))
        imp = implicit_loss.get(t, float("nan"))
        print(f"| {t} | {mllib:,.1f} | {cg_loss[t]:,.1f} | {cg_loss[t] / mllib:.4f} | {imp:,.1f} |", flush=True)
    train.unpersist()


def _implicit_model(world: World, cfg: WeeklyConfig, regularization: float) -> tuple[Any, sp.csr_matrix]:
    """``implicit``'s CPU ALS on MLlib's confidence matrix 1 + alpha r (see the module docstring)."""
    from implicit.cpu.als import AlternatingLeastSquares

    t = world.train
    ratings = sp.csr_matrix(
        (t["rating"].to_numpy(), (t["user_idx"].to_numpy(), t["track_idx"].to_numpy())),
        shape=(world.users, world.items),
    )
    confidence = ratings.copy()
    confidence.data = 1.0 + cfg.alpha * confidence.data  # MLlib's c = 1 + alpha * r, see the docstring
    confidence = confidence.astype(np.float32)
    model = AlternatingLeastSquares(
        factors=cfg.rank,
        regularization=regularization,
        alpha=1.0,
        iterations=cfg.max_iter,
        random_state=cfg.seed,
        num_threads=0,
    )
    return model, confidence


def implicit_objective_curve(
    world: World, cfg: WeeklyConfig, regularization: float, iters: list[int]
) -> dict[int, float]:
    """MLlib's objective of ``implicit``'s factors after each iteration in ``iters`` (an untimed fit)."""
    model, confidence = _implicit_model(world, cfg, regularization)
    t = world.train
    u, i, r = t["user_idx"].to_numpy(), t["track_idx"].to_numpy(), t["rating"].to_numpy()
    out: dict[int, float] = {}

    def callback(iteration: int, _elapsed: float, _loss: float) -> None:
        if iteration + 1 in iters:  # implicit counts iterations from 0
            x, y = np.asarray(model.user_factors), np.asarray(model.item_factors)
            out[iteration + 1] = implicit_objective(u, i, r, x, y, cfg.alpha, cfg.reg_param)

    with threadpool_limits(1, "blas"):
        model.fit(confidence, show_progress=False, callback=callback)
    return out


def run_implicit(
    spark: SparkSession, world: World, cfg: WeeklyConfig, regularization: float, relevant: DataFrame, k: int
) -> dict[str, Any]:
    t = world.train
    model, confidence = _implicit_model(world, cfg, regularization)
    # implicit parallelises over users itself; a BLAS thread pool underneath only oversubscribes the cores.
    with threadpool_limits(1, "blas"):
        _, fit_s = timed(lambda: model.fit(confidence, show_progress=False))
    users = np.unique(t["user_idx"].to_numpy())
    (ids, scores), topn_s = timed(
        lambda: model.recommend(users, confidence[users], N=k, filter_already_liked_items=True)
    )
    recs = pd.DataFrame(
        {
            C.USER_IDX: np.repeat(users, ids.shape[1]).astype("int32"),
            C.TRACK_IDX: ids.ravel().astype("int32"),
            C.RANK: np.tile(np.arange(1, ids.shape[1] + 1), len(users)).astype("int32"),
            C.SCORE: scores.ravel().astype("float64"),
        }
    )
    recs = recs[recs[C.TRACK_IDX] >= 0]  # implicit pads short lists with -1
    sdf = with_ids(spark.createDataFrame(recs)).cache()
    metrics = ranking_metrics(sdf, relevant, k)
    sdf.unpersist()
    return {"fit_s": fit_s, "topn_s": topn_s, "mllib_topn_s": float("nan"), **metrics}


def kernel_bench(world: World, cfg: WeeklyConfig, ranks: list[int]) -> None:
    """The CG kernel alone (:func:`spotrec.weekly.cg.cg_rows`, no Spark, one thread): ``max_iter`` iterations
    of both sides, against ``implicit``'s fit with ``num_threads=1`` on the same matrix, same process."""
    t = world.train
    r = sp.csr_matrix(
        (t["rating"].to_numpy().astype(np.float32), (t["user_idx"].to_numpy(), t["track_idx"].to_numpy())),
        shape=(world.users, world.items),
    )
    rt = r.T.tocsr()
    lam = cfg.reg_param * float(t.groupby("user_idx").size().mean())
    print(f"\n| rank | CG kernel, {cfg.max_iter} iterations, 1 thread s | implicit, 1 thread s | ratio |")
    print("|---:|---:|---:|---:|")
    for rank in ranks:
        x = initial_factors(np.arange(world.users), rank, cfg.seed, 0)
        y = np.zeros((world.items, rank), np.float32)
        cg_rows(r.indptr[:2], r.indices, r.data, x[:1], y, np.eye(rank), 0.1, 1.0, 1)  # compile / load the cache
        start = time.perf_counter()
        for _ in range(cfg.max_iter):
            y = cg_rows(rt.indptr, rt.indices, rt.data, y, x, x.astype(np.float64).T @ x, cfg.reg_param, cfg.alpha, 3)
            x = cg_rows(r.indptr, r.indices, r.data, x, y, y.astype(np.float64).T @ y, cfg.reg_param, cfg.alpha, 3)
        kernel_s = time.perf_counter() - start
        model, confidence = _implicit_model(world, cfg.model_copy(update={"rank": rank}), lam)
        model.num_threads = 1
        with threadpool_limits(1, "blas"):
            _, implicit_s = timed(lambda m=model, c=confidence: m.fit(c, show_progress=False))
        print(f"| {rank} | {kernel_s:.2f} | {implicit_s:.2f} | {kernel_s / implicit_s:.2f}x |", flush=True)


def format_rows(rows: list[tuple[str, dict[str, Any]]], k: int) -> str:
    head = f"| model | fit s | vs implicit fit | top-{k} s | ndcg@{k} | map@{k} | precision@{k} | recall@{k} | loss |"
    lines = [head, "|" + "---|" * 9]
    for name, r in rows:
        ratio = r.get("vs_implicit", float("nan"))
        lines.append(
            f"| {name} | {r['fit_s']:.1f} | {ratio:.1f}x | {r['topn_s']:.1f} | {r['ndcg']:.4f} | {r['map']:.4f} "
            f"| {r['precision']:.4f} | {r['recall']:.4f} | {r.get('loss', float('nan')):,.0f} |"
        )
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def run_tuning(spark: SparkSession, world: World, base: WeeklyConfig, relevant: DataFrame, a: Any) -> None:
    """Fit each Spark-side setting and implicit in interleaved rounds; print median fit time per setting."""
    settings = []
    for item in a.tuning.split(","):
        blocks, level = item.split("x")
        settings.append((int(blocks), level))
    reg = a.regs[0]
    implicit_reg = (a.implicit_regs or [reg * float(world.train.groupby("user_idx").size().mean())])[0]
    times: dict[str, list[float]] = {}
    quality: dict[str, float] = {}
    # Untimed warm-up: the first fit in a JVM pays class loading and JIT, which would bias the first setting.
    run_spark(spark, world, base.model_copy(update={"max_iter": 1}), relevant, a.k, a.block_size, time_mllib_topn=False)
    for rnd in range(a.rounds):
        row = run_implicit(spark, world, base, implicit_reg, relevant, a.k)
        times.setdefault("implicit", []).append(row["fit_s"])
        quality["implicit"] = row["ndcg"]
        for blocks, level in settings:
            name = f"spark blocks={blocks} storage={level}"
            cfg = base.model_copy(
                update={
                    "reg_param": reg,
                    "num_blocks": blocks,
                    "intermediate_storage_level": level,
                    "final_storage_level": level,
                }
            )
            r = run_spark(spark, world, cfg, relevant, a.k, a.block_size, time_mllib_topn=False)
            times.setdefault(name, []).append(r["fit_s"])
            quality[name] = r["ndcg"]
            print(f"round {rnd + 1}: {name}: fit {r['fit_s']:.1f}s ndcg {r['ndcg']:.4f}", flush=True)
    ref = float(np.median(times["implicit"]))
    print(f"\nserializer {a.serializer}, shuffle partitions {a.shuffle_partitions or a.blocks}, {a.rounds} rounds")
    print(f"| setting | median fit s | vs implicit fit | NDCG@{a.k} |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        med = float(np.median(values))
        print(f"| {name} | {med:.1f} | {med / ref:.1f}x | {quality[name]:.4f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=40_000)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--per-user", type=int, default=70, help="plays drawn per user (repeats become play counts)")
    p.add_argument("--groups", type=int, default=20)
    p.add_argument("--own-share", type=float, default=0.7)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--rank", type=int, default=64, help="rank of --tuning runs")
    p.add_argument("--ranks", default="64", help="comma-separated ranks of the comparison (e.g. 64,128)")
    p.add_argument("--solvers", default="mllib,cg", help="weekly.solver values to fit (comma-separated)")
    p.add_argument("--cg-steps", type=int, default=3, help="weekly.cg_steps of the CG solver")
    p.add_argument(
        "--loss-iters", default="", help="e.g. 1,2,3,5,10: objective after t iterations, MLlib vs CG (refits)"
    )
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--alpha", type=float, default=10.0)
    p.add_argument("--regs", type=_floats, default=[0.05], help="MLlib regParam values (ALS-WR), comma-separated")
    p.add_argument(
        "--implicit-regs",
        type=_floats,
        default=None,
        help="implicit's constant lambda' values; default: each MLlib regParam x mean n_u, and unscaled",
    )
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--block-size", type=int, default=2048)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--serializer", choices=["java", "kryo"], default="java", help="spark.serializer")
    p.add_argument("--storage-level", default="MEMORY_AND_DISK", help="MLlib ALS intermediate/final storage level")
    p.add_argument("--shuffle-partitions", type=int, default=None, help="default: --blocks")
    p.add_argument("--skip-implicit", action="store_true", help="time the Spark side only (tuning runs)")
    p.add_argument(
        "--tuning",
        default=None,
        help="Spark-side tuning mode: comma-separated BLOCKSxSTORAGE_LEVEL settings (e.g. 4xMEMORY_AND_DISK,"
        "2xMEMORY_ONLY) fitted in interleaved rounds beside implicit; prints median fit times and ratios",
    )
    p.add_argument("--kernel", action="store_true", help="time the CG kernel alone vs implicit, one thread each")
    p.add_argument("--rounds", type=int, default=2, help="tuning mode: interleaved rounds (median reported)")
    a = p.parse_args()

    world, gen_s = timed(
        lambda: synthetic_matrix(a.users, a.items, a.per_user, a.groups, a.own_share, a.test_fraction, a.seed)
    )
    n_train, n_test = len(world.train), len(world.test)
    mean_n_u = float(world.train.groupby("user_idx").size().mean())
    print(
        f"matrix: {a.users} users x {a.items} tracks, {n_train + n_test:,} interactions "
        f"({n_train:,} train / {n_test:,} held out), mean {mean_n_u:.1f} train tracks per user; "
        f"generated in {gen_s:.1f}s",
        flush=True,
    )
    base = WeeklyConfig(
        rank=a.rank,
        reg_param=a.regs[0],
        alpha=a.alpha,
        max_iter=a.iters,
        num_blocks=a.blocks,
        seed=a.seed,
        cg_steps=a.cg_steps,
        checkpoint_interval=5,
        intermediate_storage_level=a.storage_level,
        final_storage_level=a.storage_level,
    )
    spark_conf = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
    if a.serializer == "kryo":
        spark_conf["spark.serializer"] = "org.apache.spark.serializer.KryoSerializer"
    print(
        f"spark side: blocks {a.blocks}, shuffle partitions {a.shuffle_partitions or a.blocks}, serializer "
        f"{a.serializer}, storage level {a.storage_level}, local[{a.cores}]",
        flush=True,
    )
    spark = get_spark(
        SparkConfig(
            master=f"local[{a.cores}]",
            app_name="als-bench",
            shuffle_partitions=a.shuffle_partitions or a.blocks,
            driver_memory="8g",
            conf=spark_conf,
        )
    )
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="als-bench-ck-"))
    relevant = with_ids(spark.createDataFrame(world.test)).select(C.USER_ID, C.TRACK_ID).cache()
    relevant.count()

    if a.kernel:
        kernel_bench(world, base, _ints(a.ranks))
        spark.stop()
        return
    if a.tuning:
        run_tuning(spark, world, base, relevant, a)
        spark.stop()
        return
    implicit_regs = a.implicit_regs or sorted({round(r * mean_n_u, 3) for r in a.regs} | set(a.regs))
    names = {"mllib": "Spark MLlib", "cg": "Spark CG"}
    rows: list[tuple[str, dict[str, Any]]] = []
    summary: list[str] = []
    for rank in [int(x) for x in a.ranks.split(",") if x]:
        base_r = base.model_copy(update={"rank": rank})
        implicit_rows: list[tuple[str, dict[str, Any]]] = []
        for lam in [] if a.skip_implicit else implicit_regs:
            r = run_implicit(spark, world, base_r, lam, relevant, a.k)
            r["vs_implicit"] = 1.0
            implicit_rows.append((f"implicit {rank}f lambda'={lam:g} (= {lam / mean_n_u:.4f} x mean n_u)", r))
            print(format_rows(implicit_rows[-1:], a.k), flush=True)
        ref = min((r["fit_s"] for _, r in implicit_rows), default=float("nan"))
        spark_rows: list[tuple[str, dict[str, Any]]] = []
        for solver in a.solvers.split(","):
            for i, reg in enumerate(a.regs):
                cfg = base_r.model_copy(update={"reg_param": reg, "solver": solver})
                r = run_spark(spark, world, cfg, relevant, a.k, a.block_size, time_mllib_topn=i == 0)
                r["vs_implicit"] = r["fit_s"] / ref
                spark_rows.append((f"{names[solver]} {rank}f regParam={reg:g} (ALS-WR)", r))
                print(format_rows(spark_rows[-1:], a.k), flush=True)
        rows += implicit_rows + spark_rows
        best = {
            s: max((r for r in spark_rows if r[0].startswith(names[s])), key=lambda row: row[1]["ndcg"])
            for s in a.solvers.split(",")
        }
        if "mllib" in best and "cg" in best:
            cg, ml = best["cg"][1], best["mllib"][1]
            summary.append(
                f"rank {rank}: CG fit {cg['fit_s']:.1f}s = {cg['fit_s'] / ref:.1f}x implicit's {ref:.1f}s "
                f"(MLlib {ml['fit_s'] / ref:.1f}x; target <= 5x); CG NDCG@{a.k} vs MLlib "
                f"{cg['ndcg'] / ml['ndcg'] - 1:+.2%} (target within 2%); CG loss / MLlib loss "
                f"{cg['loss'] / ml['loss']:.4f}"
            )
        if implicit_rows:
            best_implicit = max(implicit_rows, key=lambda row: row[1]["ndcg"])
            for name, r in best.values():
                summary.append(
                    f"rank {rank}: best {name} NDCG@{a.k} relative to best implicit ({best_implicit[0]}): "
                    f"{r['ndcg'] / best_implicit[1]['ndcg'] - 1:+.1%}"
                )
        if a.loss_iters:
            lam = (a.implicit_regs or [a.regs[0] * mean_n_u])[0]
            loss_curve(spark, world, base_r.model_copy(update={"reg_param": a.regs[0]}), _ints(a.loss_iters), lam)

    print()
    print(format_rows(rows, a.k))
    print("\n" + "\n".join(summary))
    first = next((r for name, r in rows if name.startswith("Spark MLlib")), None)
    if first is not None:
        print(
            f"top-{a.k} for all {world.train['user_idx'].nunique():,} users: top_n_unheard "
            f"{first['topn_s']:.1f}s (heard excluded) vs MLlib recommendForAllUsers {first['mllib_topn_s']:.1f}s "
            f"(no exclusion)"
        )
    spark.stop()


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


if __name__ == "__main__":
    main()
