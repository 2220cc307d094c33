"""Implicit ALS with conjugate-gradient solves on Spark (Takacs, Pilaszy & Tikk 2011), beside MLlib's.

The objective is exactly the one MLlib's ``ALS(implicitPrefs=True)`` minimises (Hu, Koren & Volinsky 2008,
with MLlib's ALS-WR regularisation)::

    sum over all (u, i) of c_ui (p_ui - x_u . y_i)^2 + reg * (sum_u n_u |x_u|^2 + sum_i n_i |y_i|^2)

with c_ui = 1 + alpha |r_ui| and p_ui = 1 where r_ui > 0, else c_ui = 1 and p_ui = 0; n_u (n_i) counts the
positive ratings of user u (track i): regularisation is scaled per row, as in MLlib (and unlike
``implicit``'s constant lambda). Each half-iteration solves, for every user (then every track),

    (Y^T Y + sum_i (c_ui - 1) y_i y_i^T + reg n_u I) x_u = sum_{i: r_ui > 0} c_ui y_i

MLlib forms that k x k matrix with one rank-1 update per rating (O(nnz k^2)) and factorises it per user
(O(k^3)); here ``cg_steps`` conjugate-gradient steps per user, warm-started from the previous factors, cost
O(nnz k + n k^2) per step: Y^T Y is computed once per half-iteration and every matrix-vector product
goes through the user's own ratings only (the ``implicit`` library's CPU solver, vectorised over a whole
Arrow batch of users with numpy / scipy.sparse).

Layout (Spark-native; nothing on the driver grows with the ratings):

- the ratings are packed once per side into one row per user (``id, block, nbrs, ratings, features``,
  neighbours sorted), hash-partitioned by block (``id mod num_blocks``) into ``num_blocks`` partitions,
  sorted within, cached; every half-iteration rewrites only the ``features`` column of that state
  (``mapInArrow``; the old state is unpersisted once the new one is cached);
- the other side's factors reach the blocks as a broadcast when they fit ``cg_broadcast_mb`` (the driver
  then holds one factor matrix, n x k float32, and Y^T Y comes from it), otherwise through a join on block
  id: the (block, neighbour) pairs each block needs are computed once and cached, joined with the factors
  and co-grouped with the block's ratings; Y^T Y is then a ``treeAggregate`` of per-batch partial sums;
- the factor lineage is checkpointed every ``checkpoint_interval`` iterations when the SparkContext has a
  checkpoint directory (as MLlib does).

Seeded and deterministic: the initial factors are a hash of (seed, side, id, component) turned Gaussian,
independent of partitioning; rows are processed in a fixed order, so a seed gives the same factors run
after run. Order: item factors are solved first from random user factors, as in MLlib.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.storagelevel import StorageLevel

from spotrec import columns as C
from spotrec.config import WeeklyConfig
from spotrec.weekly.als import _REQUIRED, _require, recommend_from_factors
from spotrec.weekly.topn import FEATURES

_ID, _BLOCK, _NBRS, _RATINGS = "id", "block", "nbrs", "ratings"
_NEED_BLOCK = "need_block"
"""Block id of the (block, neighbour) pairs of the join path (its own name: the pairs derive from the state)."""
_STATE_SCHEMA = f"{_ID} int, {_BLOCK} int, {_NBRS} array<int>, {_RATINGS} array<float>, {FEATURES} array<float>"
_CHUNK_NNZ = 1 << 15
"""Ratings per numpy chunk inside a batch (bounds the gathered nnz x k neighbour-factor matrix)."""


def cg_model_version(cfg: WeeklyConfig, input_version: str = "") -> str:
    """``als-cg-r{rank}-l{reg}-a{alpha}-{hash}``; the hash covers every fitting parameter and the input."""
    params = {
        "solver": "cg",
        "rank": cfg.rank,
        "reg_param": cfg.reg_param,
        "alpha": cfg.alpha,
        "max_iter": cfg.max_iter,
        "cg_steps": cfg.cg_steps,
        "num_blocks": cfg.num_blocks,
        "seed": cfg.seed,
        "input": input_version,
    }
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return f"als-cg-r{cfg.rank}-l{cfg.reg_param:g}-a{cfg.alpha:g}-{digest}"


# -- numpy kernels ---------------------------------------------------------------------------------------


def initial_factors(ids: np.ndarray, rank: int, seed: int, side: int) -> np.ndarray:
    """Seeded unit-norm Gaussian factors, one row per id, from a hash of (seed, side, id, component).

    A counter-based generator (splitmix64 finaliser, then Box-Muller) makes each row a function of its id
    alone, so the initialisation does not depend on how rows are partitioned or batched.
    """
    ids = np.asarray(ids, dtype=np.uint64)
    j = np.arange(2 * rank, dtype=np.uint64)
    with np.errstate(over="ignore"):
        key = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)) ^ (np.uint64(side + 1) << np.uint64(56))
        z = key + ids[:, None] * np.uint64(2 * rank) + j[None, :] + np.uint64(1)
        z = z * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = ((z >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    g = np.sqrt(-2.0 * np.log(u[:, :rank])) * np.cos(2.0 * np.pi * u[:, rank:])
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return g.astype(np.float32)


def cg_solve(
    indptr: np.ndarray,
    nbrs: np.ndarray,
    ratings: np.ndarray,
    x0: np.ndarray,
    other: np.ndarray,
    gram: np.ndarray,
    reg: float,
    alpha: float,
    steps: int,
) -> np.ndarray:
    """``steps`` conjugate-gradient steps on each row's implicit normal equations (module docstring).

    Args:
        indptr, nbrs, ratings: the rows' ratings in CSR form (row r's neighbours are
            ``nbrs[indptr[r]:indptr[r + 1]]``, indexes into ``other``).
        x0: warm start, rows x k.
        other: the other side's factors, (max id + 1) x k.
        gram: ``other.T @ other`` (k x k).
        reg, alpha: MLlib's ``regParam`` (scaled by each row's positive-rating count) and ``alpha``.
        steps: CG steps per row.

    Returns:
        The new factors, rows x k float32.
    """
    n = x0.shape[0]
    m = other.shape[0]
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(n), counts)
    r = ratings.astype(np.float32)
    c1 = (alpha * np.abs(r)).astype(np.float32)
    positive = r > 0
    lam = (reg * np.bincount(rows, weights=positive, minlength=n)).astype(np.float32)[:, None]
    gathered = other[nbrs]  # nnz x k
    gram32 = gram.astype(np.float32)

    def times_a(v: np.ndarray) -> np.ndarray:
        s = np.einsum("ij,ij->i", gathered, v[rows]) * c1
        return v @ gram32 + lam * v + sp.csr_matrix((s, nbrs, indptr), shape=(n, m)) @ other

    b = sp.csr_matrix((np.where(positive, 1.0 + c1, 0.0).astype(np.float32), nbrs, indptr), shape=(n, m)) @ other
    x = x0.astype(np.float32, copy=True)
    res = b - times_a(x)
    p = res.copy()
    rs = np.einsum("ij,ij->i", res, res)
    for _ in range(steps):
        ap = times_a(p)
        pap = np.einsum("ij,ij->i", p, ap)
        step = np.divide(rs, pap, out=np.zeros_like(rs), where=(pap > 0) & (rs > 1e-20))
        x += step[:, None] * p
        res -= step[:, None] * ap
        rs_new = np.einsum("ij,ij->i", res, res)
        beta = np.divide(rs_new, rs, out=np.zeros_like(rs), where=rs > 1e-20)
        p = res + beta[:, None] * p
        rs = rs_new
    return x


def implicit_objective(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    ratings: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    alpha: float,
    reg: float,
) -> float:
    """The implicit-ALS objective of the module docstring (MLlib's, ALS-WR), for factors held in memory.

    O(nnz k + (m + n) k^2) through sum_all (x.y)^2 = tr(X^T X Y^T Y); for tests and benchmarks, which hold
    the factors of a small or benchmark-sized matrix on the driver. ``users`` / ``items`` are indexed by id.
    """
    x = users.astype(np.float64)
    y = items.astype(np.float64)
    s = np.einsum("ij,ij->i", x[user_idx], y[item_idx])
    r = np.asarray(ratings, dtype=np.float64)
    c = 1.0 + alpha * np.abs(r)
    p = (r > 0).astype(np.float64)
    loss = float(np.sum((x.T @ x) * (y.T @ y))) + float(np.sum(c * (p - s) ** 2 - s**2))
    n_u = np.bincount(user_idx, weights=p, minlength=x.shape[0])
    n_i = np.bincount(item_idx, weights=p, minlength=y.shape[0])
    return loss + reg * (float(n_u @ np.sum(x**2, axis=1)) + float(n_i @ np.sum(y**2, axis=1)))


# -- Arrow glue -------------------------------------------------------------------------------------------


def _list_values(column: pa.Array | pa.ChunkedArray, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, flat values) of an Arrow list column (nulls are not expected: every row has a list)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    offsets = np.asarray(column.offsets)
    values = np.asarray(column.values.to_numpy(zero_copy_only=False), dtype=dtype)
    return offsets - offsets[0], values[offsets[0] : offsets[-1]]


def _matrix(column: pa.Array | pa.ChunkedArray, rank: int) -> np.ndarray:
    _, values = _list_values(column, np.float32)
    return values.reshape(-1, rank)


def _features_array(x: np.ndarray) -> pa.Array:
    n, k = x.shape
    return pa.ListArray.from_arrays(
        pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), pa.array(x.ravel().astype(np.float32))
    )


def _solve_batch(batch: pa.RecordBatch, other: np.ndarray, gram: np.ndarray, cfg: WeeklyConfig) -> pa.RecordBatch:
    """New ``features`` for every row of a state batch, in chunks of about ``_CHUNK_NNZ`` ratings."""
    indptr, nbrs = _list_values(batch.column(_NBRS), np.int64)
    _, ratings = _list_values(batch.column(_RATINGS), np.float32)
    x0 = _matrix(batch.column(FEATURES), cfg.rank)
    out = np.empty_like(x0)
    n = batch.num_rows
    start = 0
    while start < n:
        stop = max(int(np.searchsorted(indptr, indptr[start] + _CHUNK_NNZ, side="right")) - 1, start + 1)
        stop = min(stop, n)
        lo, hi = indptr[start], indptr[stop]
        out[start:stop] = cg_solve(
            indptr[start : stop + 1] - lo,
            nbrs[lo:hi],
            ratings[lo:hi],
            x0[start:stop],
            other,
            gram,
            cfg.reg_param,
            cfg.alpha,
            cfg.cg_steps,
        )
        start = stop
    columns = [batch.column(i) for i in range(batch.num_columns - 1)]
    return pa.RecordBatch.from_arrays([*columns, _features_array(out)], names=batch.schema.names)


# -- Spark side ---------------------------------------------------------------------------------------------


def _pack(ratings: DataFrame, key: str, other: str, cfg: WeeklyConfig, side: int) -> DataFrame:
    """One state row per ``key``: its sorted neighbours and ratings, initial factors; partitioned by block."""
    rank, seed = cfg.rank, cfg.seed
    pairs = F.sort_array(F.collect_list(F.struct(F.col(other).alias("n"), F.col(C.CONFIDENCE).alias("r"))))
    packed = (
        ratings.groupBy(F.col(key).alias(_ID))
        .agg(pairs.alias("pairs"))
        .select(
            _ID,
            F.pmod(F.col(_ID), F.lit(cfg.num_blocks)).alias(_BLOCK),
            F.col("pairs.n").alias(_NBRS),
            F.col("pairs.r").alias(_RATINGS),
        )
    )

    def init(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            ids = np.asarray(b.column(_ID).to_numpy(zero_copy_only=False))
            x = initial_factors(ids, rank, seed, side) if side == 0 else np.zeros((len(ids), rank), np.float32)
            yield pa.RecordBatch.from_arrays([*b.columns, _features_array(x)], names=[*b.schema.names, FEATURES])

    return (
        packed.repartition(cfg.num_blocks, _BLOCK)
        .sortWithinPartitions(_ID)
        .mapInArrow(init, _STATE_SCHEMA)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )


class CgRecommender:
    """Implicit ALS with conjugate-gradient solves (module docstring), behind the Recommender protocol.

    Same constructor, tables and model-version scheme as :class:`spotrec.weekly.als.AlsRecommender`;
    ``cfg.cg_steps`` and ``cfg.cg_broadcast_mb`` are its own settings.
    """

    name = "als-cg"

    def __init__(
        self,
        cfg: WeeklyConfig,
        checkpoint_dir: str | None = None,
        *,
        block_size: int = 1024,
        input_version: str = "",
    ) -> None:
        self.cfg = cfg
        self.checkpoint_dir = checkpoint_dir
        self.block_size = block_size
        self.input_version = input_version
        self.shipped: list[str] = []
        """How the factors reached the blocks in each half-iteration of the last fit (broadcast / join)."""
        self._users: DataFrame | None = None
        self._tracks: DataFrame | None = None
        self._user_state: DataFrame | None = None
        self._track_state: DataFrame | None = None
        self._sizes: dict[str, int] = {}

    @property
    def model_version(self) -> str:
        return cg_model_version(self.cfg, self.input_version)

    def fit(
        self,
        interactions: DataFrame,
        input_version: str | None = None,
        *,
        on_iteration: Callable[[int, CgRecommender], None] | None = None,
    ) -> CgRecommender:
        """Train on gold.interactions-shaped rows (user_id, track_id, user_idx, track_idx, confidence).

        ``on_iteration(i, self)`` is called after iteration i (1-based) with the factors of that iteration
        readable through :meth:`user_factors_frame` / :meth:`track_factors_frame` (benchmarks use it for
        the objective per iteration).
        """
        _require(interactions, _REQUIRED, "ALS input")
        if input_version is not None:
            self.input_version = input_version
        spark = interactions.sparkSession
        sc = spark.sparkContext
        if self.checkpoint_dir:
            sc.setCheckpointDir(self.checkpoint_dir)
        self.unpersist()
        cfg = self.cfg
        ratings = interactions.select(
            F.col(C.USER_IDX).cast("int").alias(C.USER_IDX),
            F.col(C.TRACK_IDX).cast("int").alias(C.TRACK_IDX),
            F.col(C.CONFIDENCE).cast("float").alias(C.CONFIDENCE),
        )
        users = _pack(ratings, C.USER_IDX, C.TRACK_IDX, cfg, side=0)
        tracks = _pack(ratings, C.TRACK_IDX, C.USER_IDX, cfg, side=1)
        # The first actions on the packed states also fill their caches.
        self._sizes = {side: _max_id(state) + 1 for side, state in (("users", users), ("tracks", tracks))}
        sizes = self._sizes
        needs: dict[str, DataFrame] = {}
        self.shipped = []
        checkpoint = sc.getCheckpointDir() is not None and cfg.checkpoint_interval > 0
        user_table: pa.Table | None = None
        for it in range(1, cfg.max_iter + 1):
            tracks, track_table = self._half(tracks, users, user_table, sizes["users"], needs, "tracks")
            users, user_table = self._half(users, tracks, track_table, sizes["tracks"], needs, "users")
            if checkpoint and it % cfg.checkpoint_interval == 0 and it < cfg.max_iter:
                users, tracks = _checkpoint(users), _checkpoint(tracks)
            self._user_state, self._track_state = users, tracks
            if on_iteration is not None:
                on_iteration(it, self)
        for frame in needs.values():
            frame.unpersist()
        self._user_state, self._track_state = users, tracks
        self._users = interactions.select(F.col(C.USER_ID), F.col(C.USER_IDX).cast("int")).distinct()
        self._tracks = interactions.select(F.col(C.TRACK_ID), F.col(C.TRACK_IDX).cast("int")).distinct()
        return self

    def _half(
        self,
        solve: DataFrame,
        fixed: DataFrame,
        fixed_table: pa.Table | None,
        size: int,
        needs: dict[str, DataFrame],
        side: str,
    ) -> tuple[DataFrame, pa.Table | None]:
        """One half-iteration: new factors for every row of ``solve`` given ``fixed``'s factors.

        ``fixed_table`` holds ``fixed``'s (id, features) when the previous half-iteration collected them for
        a broadcast. Returns the new cached state and, when this side's factors fit the broadcast budget,
        its (id, features) as collected by the action that materialises it (one job per half-iteration).
        """
        cfg = self.cfg
        shipped: Any = None
        if _fits(size, cfg):
            self.shipped.append("broadcast")
            if fixed_table is None:
                fixed_table = fixed.select(_ID, FEATURES).toArrow()
            new, shipped = _solve_broadcast(solve, fixed_table, size, cfg)
        else:
            self.shipped.append("join")
            if side not in needs:
                pairs = solve.select(F.col(_BLOCK).alias(_NEED_BLOCK), F.explode(_NBRS).alias(_ID))
                needs[side] = pairs.distinct().persist(StorageLevel.MEMORY_AND_DISK)
            new = _solve_join(solve, fixed, needs[side], size, cfg)
        new = new.persist(StorageLevel.MEMORY_AND_DISK)
        table: pa.Table | None = None
        if _fits(self._sizes[side], cfg):
            table = new.select(_ID, FEATURES).toArrow()  # materialises the cache and feeds the next broadcast
        else:
            new.select(_ID).write.format("noop").mode("overwrite").save()
        solve.unpersist()
        if shipped is not None:
            shipped.unpersist()  # executors drop their copies; the cached state no longer needs it
        return new, table

    def unpersist(self) -> None:
        """Drop the cached factor state of the last fit."""
        for state in (self._user_state, self._track_state):
            if state is not None:
                state.unpersist()

    def _state(self) -> tuple[DataFrame, DataFrame]:
        if self._user_state is None or self._track_state is None:
            raise RuntimeError("CgRecommender is not fitted: call fit(interactions) first")
        return self._user_state, self._track_state

    def _id_maps(self) -> tuple[DataFrame, DataFrame]:
        if self._users is None or self._tracks is None:
            raise RuntimeError("CgRecommender is not fitted: call fit(interactions) first")
        return self._users, self._tracks

    def user_factors_frame(self) -> DataFrame:
        """user_idx, features."""
        return self._state()[0].select(F.col(_ID).alias(C.USER_IDX), _non_null_features())

    def track_factors_frame(self) -> DataFrame:
        """track_idx, features."""
        return self._state()[1].select(F.col(_ID).alias(C.TRACK_IDX), _non_null_features())

    def user_factors(self) -> DataFrame:
        """gold.user_factors: user_idx, user_id, features, model_version."""
        users, _ = self._id_maps()
        f = self.user_factors_frame().join(users, C.USER_IDX)
        return f.withColumn(C.MODEL_VERSION, F.lit(self.model_version))

    def track_factors(self) -> DataFrame:
        """gold.track_factors: track_idx, track_id, features, model_version."""
        _, tracks = self._id_maps()
        f = self.track_factors_frame().join(tracks, C.TRACK_IDX)
        return f.withColumn(C.MODEL_VERSION, F.lit(self.model_version))

    def recommend(self, users: DataFrame, n: int, exclude: DataFrame | None = None) -> DataFrame:
        """Top ``n`` unheard tracks per user, as :meth:`spotrec.weekly.als.AlsRecommender.recommend`."""
        user_map, track_map = self._id_maps()
        return recommend_from_factors(
            self.user_factors_frame(),
            self.track_factors_frame(),
            user_map,
            track_map,
            users,
            n,
            exclude,
            self.block_size,
        )


def _non_null_features() -> Any:
    """``features`` typed array<float not null>, as MLlib's factors and the factor tables (never null here)."""
    return F.transform(FEATURES, lambda v: F.coalesce(v, F.lit(0.0).cast("float"))).alias(FEATURES)


def _max_id(state: DataFrame) -> int:
    row = state.agg(F.max(_ID)).first()
    if row is None or row[0] is None:
        raise ValueError("ALS input has no ratings")
    return int(row[0])


def _checkpoint(state: DataFrame) -> DataFrame:
    """Cut the lineage (reliable checkpoint into the context's checkpoint directory), keep it cached."""
    cut = state.checkpoint(eager=True).persist(StorageLevel.MEMORY_AND_DISK)
    state.unpersist()
    return cut


def _dense(ids: np.ndarray, x: np.ndarray, size: int, rank: int) -> np.ndarray:
    out = np.zeros((size, rank), dtype=np.float32)
    out[ids] = x
    return out


def _fits(size: int, cfg: WeeklyConfig) -> bool:
    """Whether ``size`` factor rows (float32) fit the broadcast budget."""
    return size * cfg.rank * 4 <= cfg.cg_broadcast_mb * 2**20


def _solve_broadcast(solve: DataFrame, table: pa.Table, size: int, cfg: WeeklyConfig) -> tuple[DataFrame, Any]:
    """Broadcast path: the fixed side's factors (id-ordered, so Y^T Y is reproducible) go to every task."""
    ids = np.asarray(table.column(_ID).to_numpy(), dtype=np.int64)
    other = _dense(ids, _matrix(table.column(FEATURES), cfg.rank), size, cfg.rank)
    gram = other.astype(np.float64).T @ other.astype(np.float64)
    shipped = solve.sparkSession.sparkContext.broadcast((other, gram))

    def solve_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        y, g = shipped.value
        for b in batches:
            yield _solve_batch(b, y, g, cfg)

    return solve.mapInArrow(solve_batches, _STATE_SCHEMA), shipped


def _gram(fixed: DataFrame, rank: int) -> np.ndarray:
    """Y^T Y as a treeAggregate of per-batch partial sums (the join path never collects Y itself)."""

    def partial(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        g = np.zeros((rank, rank), dtype=np.float64)
        for b in batches:
            y = _matrix(b.column(FEATURES), rank).astype(np.float64)
            g += y.T @ y
        yield pa.RecordBatch.from_arrays([pa.array([g.ravel().tolist()], pa.list_(pa.float64()))], names=["g"])

    parts = fixed.select(FEATURES).mapInArrow(partial, "g array<double>").rdd.map(lambda row: np.asarray(row.g))
    total = parts.treeAggregate(np.zeros(rank * rank), lambda a, b: a + b, lambda a, b: a + b, depth=2)
    return np.asarray(total).reshape(rank, rank)


def _solve_join(solve: DataFrame, fixed: DataFrame, needs: DataFrame, size: int, cfg: WeeklyConfig) -> DataFrame:
    """Join path: each block gets only the factors its ratings reference, by a join on block id."""
    gram = _gram(fixed, cfg.rank)
    shipped = needs.join(fixed.select(_ID, FEATURES), _ID)
    rank = cfg.rank

    def solve_block(state: pd.DataFrame, factors: pd.DataFrame) -> pd.DataFrame:
        if state.empty:
            return state
        state = state.sort_values(_ID, kind="stable").reset_index(drop=True)
        ids = factors[_ID].to_numpy(np.int64)
        feats = np.stack(factors[FEATURES].to_numpy()).astype(np.float32) if len(ids) else np.zeros((0, rank))
        other = _dense(ids, feats, size, rank)
        batch = pa.RecordBatch.from_pandas(state, preserve_index=False)
        batch = pa.RecordBatch.from_arrays(
            [
                batch.column(_ID),
                batch.column(_BLOCK),
                pa.array(state[_NBRS].tolist(), pa.list_(pa.int32())),
                pa.array(state[_RATINGS].tolist(), pa.list_(pa.float32())),
                pa.array(state[FEATURES].tolist(), pa.list_(pa.float32())),
            ],
            names=[_ID, _BLOCK, _NBRS, _RATINGS, FEATURES],
        )
        out = _solve_batch(batch, other, gram, cfg).to_pandas()
        return out

    solved = (
        solve.groupBy(_BLOCK)
        .cogroup(shipped.groupBy(_NEED_BLOCK))
        .applyInPandas(solve_block, _STATE_SCHEMA)
        .repartition(cfg.num_blocks, _BLOCK)
        .sortWithinPartitions(_ID)
    )
    return solved


__all__ = ["CgRecommender", "cg_model_version", "cg_solve", "implicit_objective", "initial_factors"]
