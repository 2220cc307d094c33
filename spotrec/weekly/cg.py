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
O(nnz k + n k^2) per step: Y^T Y is computed once per half-iteration and every matrix-vector product goes
through the user's own ratings only (the ``implicit`` library's CPU solver). The per-user loop is compiled
with numba (:func:`cg_rows`: float32 data and factors, float64 accumulators; ``fastmath`` limited to
reassociation and fused multiply-add, so the dot products vectorise; it is 5x faster than without and
the float32 results match the strict-order kernel). The numpy :func:`cg_solve` (vectorised over rows with
scipy.sparse) is the reference it is tested against. numba caches the compiled kernel next to this file
(``__pycache__``, or numba's user-wide cache where that is read-only), so a Python worker loads it
(about 0.1 s) instead of compiling it (about 2 s) on its first batch; Spark reuses Python workers, so that
cost is paid once per worker process.

Layout (Spark-native; nothing on the driver grows with the ratings; the factor matrices it holds on the
broadcast path are bounded by ``cg_broadcast_mb``):

- the ratings are packed once for both sides by one shuffle (:func:`_pack`): each input task splits its
  rows by (side, block) into raw numpy byte strings, so the shuffle moves ``2 * num_blocks`` large rows
  per task, not one row per rating; each of the ``2 * num_blocks`` partitions then becomes CSR chunks (at
  most ``_CHUNK_NNZ`` ratings or ``_CHUNK_ROWS`` rows each: ``ids`` int32, ``indptr`` int64, ``indices``
  int32 neighbour ids, ``data`` float32 ratings), cached as an RDD for the whole fit. A block is a hash
  of the id alone (:func:`block_of`), so it does not depend on how the input is partitioned;
- when both factor matrices fit ``cg_broadcast_mb`` (n x k float32 each), the driver holds them: every
  half-iteration is one job on that side's cached partitions only (``SparkContext.runJob``), with the
  other side's factors and their Y^T Y (k x k, computed on the driver) broadcast, and this side's previous
  factors (the warm start) read from the broadcast made when they were solved, so each matrix is
  broadcast once; only the new factors come back. Nothing is rewritten per iteration, so there is no
  lineage to checkpoint; the fitted factors stay broadcast and the factor frames are generated from them
  on executors;
- otherwise the packed chunks become one cached state frame per side (with a ``features`` column) and
  every half-iteration rewrites the solved side's state (its ``features`` bytes, one ``mapInArrow``; the
  old state is unpersisted once the new one is cached); the other side's factors are still broadcast when
  they alone fit, else they go through a join on block id: the (block, neighbour) pairs each block needs
  are computed once and cached, joined with the factor rows and shuffled to the blocks with their state
  chunks, so a task only holds the factors its block references; Y^T Y is then a sum of per-task partial
  sums in a fixed order;
- on that second path the factor lineage is checkpointed every ``checkpoint_interval`` iterations when
  the SparkContext has a checkpoint directory (as MLlib does).

Seeded and deterministic: the initial factors are a hash of (seed, side, id, component) turned Gaussian,
independent of partitioning; each row's solve depends on its own ratings, its warm start and the other
side's factors only, ratings are sorted within a block, and Y^T Y is summed in a fixed order, so a seed
gives the same factors run after run, however the input is partitioned. Order: item factors are solved
first from random user factors, as in MLlib.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit
from pyspark import RDD, SparkContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.storagelevel import StorageLevel

from spotrec import columns as C
from spotrec.config import WeeklyConfig
from spotrec.weekly.als import _REQUIRED, _require, factor_table, recommend_from_factors
from spotrec.weekly.topn import FEATURES

_BLOCK, _CHUNK, _IDS, _INDPTR, _INDICES, _DATA = "block", "chunk", "ids", "indptr", "indices", "data"
_STATE = T.StructType(
    [
        T.StructField(_BLOCK, T.IntegerType(), False),
        T.StructField(_CHUNK, T.IntegerType(), False),
        T.StructField(_IDS, T.BinaryType(), False),
        T.StructField(_INDPTR, T.BinaryType(), False),
        T.StructField(_INDICES, T.BinaryType(), False),
        T.StructField(_DATA, T.BinaryType(), False),
        T.StructField(FEATURES, T.BinaryType(), False),
    ]
)
"""One CSR chunk of a block: ids (int32), indptr (int64), indices (int32), data (float32), features
(float32 rows x k), each the raw bytes of a numpy array."""
_ID, _VEC, _NEED_BLOCK = "id", "vec", "need_block"
_SHIPPED = T.StructType(
    [
        T.StructField(_NEED_BLOCK, T.IntegerType(), False),
        T.StructField(_ID, T.IntegerType(), False),
        T.StructField(_VEC, T.BinaryType(), False),
    ]
)
"""Join path: one factor row (``vec``: k float32 bytes) shipped to a block that references it."""
_CHUNK_NNZ = 1 << 20
"""Ratings per state chunk at most (a chunk is one binary row: bounds the size of one Arrow value)."""
_CHUNK_ROWS = 1 << 16
"""Rows per state chunk at most (bounds the features blob: 32 MB at rank 128)."""


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
    import scipy.sparse as sp  # the reference only: Python workers running the kernel need not import it

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
    step = 1 << 20  # ratings per slice: the gathered rows take 2 x step x k float64, not 2 x nnz x k
    s = np.concatenate(
        [
            np.einsum("ij,ij->i", x[user_idx[a : a + step]], y[item_idx[a : a + step]])
            for a in range(0, len(user_idx), step)
        ]
        or [np.zeros(0)]
    )
    r = np.asarray(ratings, dtype=np.float64)
    c = 1.0 + alpha * np.abs(r)
    p = (r > 0).astype(np.float64)
    loss = float(np.sum((x.T @ x) * (y.T @ y))) + float(np.sum(c * (p - s) ** 2 - s**2))
    n_u = np.bincount(user_idx, weights=p, minlength=x.shape[0])
    n_i = np.bincount(item_idx, weights=p, minlength=y.shape[0])
    return loss + reg * (float(n_u @ np.sum(x**2, axis=1)) + float(n_i @ np.sum(y**2, axis=1)))


@njit(cache=True, fastmath={"reassoc", "contract"})
def _cg_rows_kernel(
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    x0: np.ndarray,
    other: np.ndarray,
    gram: np.ndarray,
    reg: float,
    alpha: float,
    steps: int,
) -> np.ndarray:  # pragma: no cover - compiled; tested through cg_rows
    n, k = x0.shape
    out = np.empty_like(x0)
    x = np.empty(k)
    r = np.empty(k)
    p = np.empty(k)
    ap = np.empty(k)
    for u in range(n):
        lo, hi = indptr[u], indptr[u + 1]
        positives = 0
        for j in range(lo, hi):
            if data[j] > 0:
                positives += 1
        lam = reg * positives
        for a in range(k):
            x[a] = x0[u, a]
        # r = b - A x, with A = Y^T Y + sum (c - 1) y y^T + lam I and b = sum_{r > 0} c y
        for a in range(k):
            s = 0.0
            for b in range(k):
                s += gram[a, b] * x[b]
            r[a] = -s - lam * x[a]
        for j in range(lo, hi):
            rating = data[j]
            c1 = alpha * abs(rating)
            row = indices[j]
            d = 0.0
            for a in range(k):
                d += other[row, a] * x[a]
            coef = ((1.0 + c1) if rating > 0 else 0.0) - c1 * d
            for a in range(k):
                r[a] += coef * other[row, a]
        rs = 0.0
        for a in range(k):
            p[a] = r[a]
            rs += r[a] * r[a]
        for _ in range(steps):
            if rs <= 1e-20:
                break
            for a in range(k):
                s = 0.0
                for b in range(k):
                    s += gram[a, b] * p[b]
                ap[a] = s + lam * p[a]
            for j in range(lo, hi):
                c1 = alpha * abs(data[j])
                row = indices[j]
                d = 0.0
                for a in range(k):
                    d += other[row, a] * p[a]
                d *= c1
                for a in range(k):
                    ap[a] += d * other[row, a]
            pap = 0.0
            for a in range(k):
                pap += p[a] * ap[a]
            if pap <= 0.0:
                break
            step = rs / pap
            rs_new = 0.0
            for a in range(k):
                x[a] += step * p[a]
                r[a] -= step * ap[a]
                rs_new += r[a] * r[a]
            beta = rs_new / rs
            for a in range(k):
                p[a] = r[a] + beta * p[a]
            rs = rs_new
        for a in range(k):
            out[u, a] = x[a]
    return out


def cg_rows(
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
    """:func:`cg_solve`'s steps, one row at a time in compiled code (the solver's kernel).

    Same arguments and result; the arrays are cast once to the kernel's types (int64 indptr, int32
    neighbours, float32 ratings and factors, float64 Y^T Y) so numba compiles one signature.
    """
    return _cg_rows_kernel(
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(nbrs, dtype=np.int32),
        np.ascontiguousarray(ratings, dtype=np.float32),
        np.ascontiguousarray(x0, dtype=np.float32),
        np.ascontiguousarray(other, dtype=np.float32),
        np.ascontiguousarray(gram, dtype=np.float64),
        float(reg),
        float(alpha),
        int(steps),
    )


# -- Arrow glue -------------------------------------------------------------------------------------------


def _bytes(values: list[bytes]) -> pa.Array:
    return pa.array(values, type=pa.binary())


def _chunks(
    batch: pa.RecordBatch, rank: int
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(block, chunk, ids, indptr, indices, data, features) of every state row, as views of the Arrow bytes."""
    cols = batch.to_pydict()  # a handful of rows: the binary values become bytes objects, not copied again
    for i in range(batch.num_rows):
        yield (
            cols[_BLOCK][i],
            cols[_CHUNK][i],
            np.frombuffer(cols[_IDS][i], np.int32),
            np.frombuffer(cols[_INDPTR][i], np.int64),
            np.frombuffer(cols[_INDICES][i], np.int32),
            np.frombuffer(cols[_DATA][i], np.float32),
            np.frombuffer(cols[FEATURES][i], np.float32).reshape(-1, rank),
        )


def _with_features(batch: pa.RecordBatch, features: list[bytes]) -> pa.RecordBatch:
    """The state batch with its ``features`` bytes replaced (the CSR columns pass through untouched)."""
    columns = [batch.column(i) for i in range(batch.num_columns)]
    columns[batch.schema.get_field_index(FEATURES)] = _bytes(features)
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def _factor_rows(ids: np.ndarray, x: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """(id, features array<float>) Arrow columns of a chunk: one list per row over the flat float32 block."""
    n, k = x.shape
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    return pa.array(ids, pa.int32()), pa.ListArray.from_arrays(offsets, pa.array(x.ravel(), pa.float32()))


# -- Spark side ---------------------------------------------------------------------------------------------


_Block = tuple[int, int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""A packed CSR chunk: (side, block, chunk, ids int32, indptr int64, indices int32, data float32); side 0 =
users (rows are users, indices tracks), 1 = tracks."""


def block_of(ids: np.ndarray, num_blocks: int) -> np.ndarray:
    """The block of each id: a multiplicative hash of the id alone (stable across runs and partitionings;
    spreads consecutive ids, which the index assigns in id order, over the blocks)."""
    h = (np.asarray(ids, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    return (h % np.uint64(num_blocks)).astype(np.int32)


def _pack(ratings: DataFrame, num_blocks: int) -> RDD[_Block]:
    """Both sides' CSR chunks of (user_idx, track_idx, confidence) rows from one shuffle, cached: partition
    ``side * num_blocks + block``.

    Each input task splits its ratings by (side, block) into three raw numpy byte strings (ids, neighbours,
    ratings), so the shuffle moves ``2 * num_blocks`` large rows per task rather than one row per rating
    per side; each block then concatenates its pieces, sorts them by (id, neighbour, rating), so the chunks
    do not depend on the order pieces arrive in, and cuts CSR chunks of at most ``_CHUNK_NNZ`` ratings or
    ``_CHUNK_ROWS`` rows.
    """
    schema = "part int, keys binary, nbrs binary, vals binary"

    def split(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        parts = [b for b in batches if b.num_rows]
        if not parts:
            return
        table = pa.Table.from_batches(parts)
        users = np.asarray(table.column(C.USER_IDX).to_numpy(), dtype=np.int32)
        tracks = np.asarray(table.column(C.TRACK_IDX).to_numpy(), dtype=np.int32)
        vals = np.asarray(table.column(C.CONFIDENCE).to_numpy(), dtype=np.float32)
        out: dict[str, list[Any]] = {"part": [], "keys": [], "nbrs": [], "vals": []}
        for side, (keys, nbrs) in enumerate(((users, tracks), (tracks, users))):
            blocks = block_of(keys, num_blocks)
            order = np.argsort(blocks, kind="stable")
            bounds = np.searchsorted(blocks[order], np.arange(num_blocks + 1))
            for block in range(num_blocks):
                sel = order[bounds[block] : bounds[block + 1]]
                if len(sel):
                    out["part"].append(side * num_blocks + block)
                    out["keys"].append(keys[sel].tobytes())
                    out["nbrs"].append(nbrs[sel].tobytes())
                    out["vals"].append(vals[sel].tobytes())
        yield pa.RecordBatch.from_pydict(
            out,
            schema=pa.schema(
                [("part", pa.int32()), ("keys", pa.binary()), ("nbrs", pa.binary()), ("vals", pa.binary())]
            ),
        )

    def merge(pieces: Iterable[tuple[int, tuple[bytes, bytes, bytes]]]) -> Iterator[_Block]:
        part, keys, nbrs, vals = -1, [], [], []
        for piece_part, (k, n, v) in pieces:
            part = piece_part
            keys.append(np.frombuffer(k, np.int32))
            nbrs.append(np.frombuffer(n, np.int32))
            vals.append(np.frombuffer(v, np.float32))
        if part < 0:
            return
        side, block = divmod(part, num_blocks)
        rows, cols, data = np.concatenate(keys), np.concatenate(nbrs), np.concatenate(vals)
        order = np.lexsort((data, cols, rows))
        rows, cols, data = rows[order], cols[order], data[order]
        ids, starts = np.unique(rows, return_index=True)
        indptr = np.append(starts, len(rows)).astype(np.int64)
        lo, chunk = 0, 0
        while lo < len(ids):
            hi = int(np.searchsorted(indptr, indptr[lo] + _CHUNK_NNZ, side="right")) - 1
            hi = min(max(hi, lo + 1), lo + _CHUNK_ROWS, len(ids))
            a, b = indptr[lo], indptr[hi]
            yield side, block, chunk, ids[lo:hi].copy(), indptr[lo : hi + 1] - a, cols[a:b].copy(), data[a:b].copy()
            lo, chunk = hi, chunk + 1

    pieces = ratings.mapInArrow(split, schema).rdd
    return (
        pieces.map(lambda row: (row[0], (row[1], row[2], row[3])))
        .partitionBy(2 * num_blocks, lambda part: part)
        .mapPartitions(merge, preservesPartitioning=True)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )


def _sizes(packed: RDD[_Block]) -> tuple[dict[str, int], dict[str, int]]:
    """Rows per side (largest id + 1) and ids held per side, from one (side, top id, ids) summary per
    partition (``2 * num_blocks`` rows reach the driver, whatever the data's size): the action that fills
    the chunks' cache."""

    def summary(blocks: Iterable[_Block]) -> Iterator[tuple[int, int, int]]:
        side, top, count = -1, -1, 0
        for block in blocks:
            side, top, count = block[0], max(top, int(block[3].max())), count + len(block[3])
        if side >= 0:
            yield side, top, count

    sizes, held = {"users": 0, "tracks": 0}, {"users": 0, "tracks": 0}
    for side, top, count in packed.mapPartitions(summary).collect():
        name = "tracks" if side else "users"
        sizes[name] = max(sizes[name], top + 1)
        held[name] += count
    if not held["users"] or not held["tracks"]:
        raise ValueError("ALS input has no ratings")
    return sizes, held


def _state_frame(spark: SparkSession, packed: RDD[_Block], side: int, cfg: WeeklyConfig) -> DataFrame:
    """One side's packed chunks as the cached state frame of the join path (users start from
    :func:`initial_factors`, tracks from zeros: they are solved first)."""
    rank, seed = cfg.rank, cfg.seed

    def row(b: _Block) -> tuple[Any, ...]:
        _, block, chunk, ids, indptr, indices, data = b
        x = initial_factors(ids, rank, seed, side) if side == 0 else np.zeros((len(ids), rank), np.float32)
        return (block, chunk, ids.tobytes(), indptr.tobytes(), indices.tobytes(), data.tobytes(), x.tobytes())

    rows = packed.filter(lambda b: b[0] == side).map(row)
    return spark.createDataFrame(rows, _STATE).persist(StorageLevel.MEMORY_AND_DISK)


def _arrow_schema(schema: T.StructType) -> pa.Schema:
    kinds: dict[type, pa.DataType] = {T.IntegerType: pa.int32(), T.BinaryType: pa.binary(), T.FloatType: pa.float32()}
    return pa.schema([pa.field(f.name, kinds[type(f.dataType)], f.nullable) for f in schema.fields])


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
        self._packed: RDD[_Block] | None = None
        self._spark: SparkSession | None = None
        """Both sides' packed chunks (broadcast path: the fit's only cached data)."""
        self._sizes: dict[str, int] = {}
        self._final: dict[str, tuple[np.ndarray, Any]] = {}
        """Broadcast path, per side: the ids the chunks hold and the broadcast fitted factors (dense, Gram)."""

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
        spark = self._spark = interactions.sparkSession
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
        packed = _pack(ratings, cfg.num_blocks)
        self._sizes, held = _sizes(packed)  # also fills the cache
        self.shipped = []
        if _fits(self._sizes["users"], cfg) and _fits(self._sizes["tracks"], cfg):
            self._packed = packed
            self._fit_dense(packed, held["users"] == self._sizes["users"], on_iteration)
        else:
            users, tracks = (_state_frame(spark, packed, side, cfg) for side in (0, 1))
            for state in (users, tracks):
                state.select(_BLOCK).write.format("noop").mode("overwrite").save()  # fills its cache
            packed.unpersist()
            checkpoint = sc.getCheckpointDir() is not None and cfg.checkpoint_interval > 0
            self._fit_states(users, tracks, checkpoint, on_iteration)
        self._users = interactions.select(F.col(C.USER_ID), F.col(C.USER_IDX).cast("int")).distinct()
        self._tracks = interactions.select(F.col(C.TRACK_ID), F.col(C.TRACK_IDX).cast("int")).distinct()
        return self

    def _fit_dense(
        self, packed: RDD[_Block], dense_users: bool, on_iteration: Callable[[int, CgRecommender], None] | None
    ) -> None:
        """Both factor matrices fit the broadcast budget: the driver holds them, the chunks stay as packed.

        Each half-iteration is one job over the cached chunks of one side (``SparkContext.runJob`` on that
        side's partitions): the other side's factors, their Y^T Y and this side's previous factors (the
        warm start) are broadcast, and only the new factors come back. Nothing is rewritten or cached per
        iteration, so there is no lineage to checkpoint; the fitted factors stay broadcast for the frames.
        ``dense_users``: every user id below the largest has ratings, so the driver draws the initial user
        factors itself (else one job over the user chunks does, for the ids they hold).
        """
        cfg = self.cfg
        rank, seed = cfg.rank, cfg.seed

        def initial(blocks: Iterable[_Block]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for block in blocks:
                yield block[3], initial_factors(block[3], rank, seed, 0)

        sc = packed.context
        if dense_users:
            user_ids = np.arange(self._sizes["users"], dtype=np.int32)
            x = initial_factors(user_ids, rank, seed, 0)
        else:
            x, user_ids = _collect_side(packed, 0, initial, self._sizes["users"], cfg)
        xb, yb = _share(sc, x), None
        for it in range(1, cfg.max_iter + 1):
            y, track_ids = _solve_dense(packed, 1, xb, yb, self._sizes["tracks"], cfg)
            if yb is not None:
                yb.destroy()  # no frame reads a replaced matrix: free the driver's copy too
            yb = _share(sc, y)
            x, _ = _solve_dense(packed, 0, yb, xb, self._sizes["users"], cfg)
            xb.destroy()
            xb = _share(sc, x)
            self.shipped += ["broadcast", "broadcast"]
            self._final = {"users": (user_ids, xb), "tracks": (track_ids, yb)}
            if on_iteration is not None:
                on_iteration(it, self)

    def _fit_states(
        self,
        users: DataFrame,
        tracks: DataFrame,
        checkpoint: bool,
        on_iteration: Callable[[int, CgRecommender], None] | None,
    ) -> None:
        """A factor matrix exceeds the broadcast budget: every half-iteration rewrites the solved side's
        cached state (its ``features`` bytes); factors that fit are still broadcast, the others joined."""
        cfg = self.cfg
        needs: dict[str, DataFrame] = {}
        user_factors: np.ndarray | None = None
        for it in range(1, cfg.max_iter + 1):
            tracks, track_factors = self._half(tracks, users, user_factors, needs, "tracks", "users")
            users, user_factors = self._half(users, tracks, track_factors, needs, "users", "tracks")
            if checkpoint and it % cfg.checkpoint_interval == 0 and it < cfg.max_iter:
                users, tracks = _checkpoint(users), _checkpoint(tracks)
            self._user_state, self._track_state = users, tracks
            if on_iteration is not None:
                on_iteration(it, self)
        for frame in needs.values():
            frame.unpersist()
        self._user_state, self._track_state = users, tracks

    def _half(
        self,
        solve: DataFrame,
        fixed: DataFrame,
        fixed_factors: np.ndarray | None,
        needs: dict[str, DataFrame],
        side: str,
        fixed_side: str,
    ) -> tuple[DataFrame, np.ndarray | None]:
        """One half-iteration: new factors for every row of ``solve`` given ``fixed``'s factors.

        ``fixed_factors`` is ``fixed``'s dense factor matrix when the previous half-iteration collected it
        for a broadcast. Returns the new cached state and, when this side's factors fit the broadcast
        budget, its dense factor matrix as collected by the action that materialises it (one job).
        """
        cfg = self.cfg
        shipped: Any = None
        if _fits(self._sizes[fixed_side], cfg):
            self.shipped.append("broadcast")
            if fixed_factors is None:
                fixed_factors = _collect_dense(fixed, self._sizes[fixed_side], cfg.rank)
            new, shipped = _solve_broadcast(solve, fixed_factors, cfg)
        else:
            self.shipped.append("join")
            if side not in needs:
                needs[side] = _needs(solve).persist(StorageLevel.MEMORY_AND_DISK)
            new = _solve_join(solve, fixed, needs[side], cfg)
        new = new.persist(StorageLevel.MEMORY_AND_DISK)
        dense: np.ndarray | None = None
        if _fits(self._sizes[side], cfg):
            dense = _collect_dense(new, self._sizes[side], cfg.rank)  # materialises the cache, feeds the broadcast
        else:
            new.select(_BLOCK).write.format("noop").mode("overwrite").save()
        solve.unpersist()
        if shipped is not None:
            shipped.unpersist()  # executors drop their copies; the cached state no longer needs it
        return new, dense

    def unpersist(self) -> None:
        """Drop the cached factor state (and the broadcast factors) of the last fit."""
        for state in (self._user_state, self._track_state):
            if state is not None:
                state.unpersist()
        if self._packed is not None:
            self._packed.unpersist()
        for _, bc in self._final.values():
            bc.destroy()
        self._user_state = self._track_state = self._packed = None
        self._final = {}

    def _factors(self, side: int, key: str) -> DataFrame:
        if self._packed is not None and self._spark is not None:
            final = self._final["users" if side == 0 else "tracks"]
            return _dense_factors_frame(self._spark, final, key, self.cfg.num_blocks)
        state = self._track_state if side else self._user_state
        if state is None:
            raise RuntimeError("CgRecommender is not fitted: call fit(interactions) first")
        return _factors_frame(state, key, self.cfg.rank)

    def _id_maps(self) -> tuple[DataFrame, DataFrame]:
        if self._users is None or self._tracks is None:
            raise RuntimeError("CgRecommender is not fitted: call fit(interactions) first")
        return self._users, self._tracks

    def user_factors_frame(self) -> DataFrame:
        """user_idx, features (array<float>, as MLlib's factors)."""
        return self._factors(0, C.USER_IDX)

    def track_factors_frame(self) -> DataFrame:
        """track_idx, features."""
        return self._factors(1, C.TRACK_IDX)

    def user_factors(self) -> DataFrame:
        """gold.user_factors: user_idx, user_id, features, model_version."""
        return factor_table(self.user_factors_frame(), self._id_maps()[0], C.USER_IDX, self.model_version)

    def track_factors(self) -> DataFrame:
        """gold.track_factors: track_idx, track_id, features, model_version."""
        return factor_table(self.track_factors_frame(), self._id_maps()[1], C.TRACK_IDX, self.model_version)

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


def _factor_schema(key: str) -> T.StructType:
    return T.StructType(
        [
            T.StructField(key, T.IntegerType(), False),
            T.StructField(FEATURES, T.ArrayType(T.FloatType(), containsNull=False), False),
        ]
    )


def _factors_frame(state: DataFrame, key: str, rank: int) -> DataFrame:
    """(key, features array<float>) rows out of a state's chunks, built in Arrow (no Python objects)."""

    def rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            for _, _, ids, _, _, _, x in _chunks(b, rank):
                yield pa.RecordBatch.from_arrays(list(_factor_rows(ids, x)), names=[key, FEATURES])

    return state.select(_BLOCK, _CHUNK, _IDS, _INDPTR, _INDICES, _DATA, FEATURES).mapInArrow(rows, _factor_schema(key))


def _dense_factors_frame(spark: SparkSession, final: tuple[np.ndarray, Any], key: str, partitions: int) -> DataFrame:
    """Broadcast path: (key, features) rows for ``final``'s ids (sorted; the ids the side's chunks hold)
    out of its broadcast dense factors, generated on executors from positions (``spark.range``)."""
    ids, shared = final

    def rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        x = shared.value[0]
        for b in batches:
            held = ids[np.asarray(b.column(0).to_numpy())]
            yield pa.RecordBatch.from_arrays(list(_factor_rows(held, x[held])), names=[key, FEATURES])

    return spark.range(0, len(ids), numPartitions=max(1, partitions)).mapInArrow(rows, _factor_schema(key))


def _collect_dense(state: DataFrame, size: int, rank: int) -> np.ndarray:
    """A side's factors as one dense size x k float32 matrix on the driver (broadcast path: <= its budget)."""
    table = state.select(_IDS, FEATURES).toArrow()
    out = np.zeros((size, rank), dtype=np.float32)
    for ids, feats in zip(table.column(_IDS).to_pylist(), table.column(FEATURES).to_pylist(), strict=True):
        out[np.frombuffer(ids, np.int32)] = np.frombuffer(feats, np.float32).reshape(-1, rank)
    return out


def _checkpoint(state: DataFrame) -> DataFrame:
    """Cut the lineage (reliable checkpoint into the context's checkpoint directory), keep it cached."""
    cut = state.checkpoint(eager=True).persist(StorageLevel.MEMORY_AND_DISK)
    state.unpersist()
    return cut


def _fits(size: int, cfg: WeeklyConfig) -> bool:
    """Whether ``size`` factor rows (float32) fit the broadcast budget."""
    return size * cfg.rank * 4 <= cfg.cg_broadcast_mb * 2**20


def _solve_state(batch: pa.RecordBatch, other: np.ndarray, gram: np.ndarray, cfg: WeeklyConfig) -> pa.RecordBatch:
    """New ``features`` for every chunk of a state batch (``other`` indexed by the chunks' neighbour ids)."""
    new = [
        cg_rows(indptr, nbrs, data, x0, other, gram, cfg.reg_param, cfg.alpha, cfg.cg_steps).tobytes()
        for _, _, _, indptr, nbrs, data, x0 in _chunks(batch, cfg.rank)
    ]
    return _with_features(batch, new)


def _solve_broadcast(solve: DataFrame, other: np.ndarray, cfg: WeeklyConfig) -> tuple[DataFrame, Any]:
    """Broadcast path: the fixed side's dense factors and their Y^T Y (from the driver's copy) to every task."""
    y = other.astype(np.float64)
    shipped = solve.sparkSession.sparkContext.broadcast((other, y.T @ y))

    def solve_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        y, g = shipped.value
        for b in batches:
            yield _solve_state(b, y, g, cfg)

    return solve.mapInArrow(solve_batches, _STATE), shipped


def _collect_side(
    packed: RDD[_Block],
    side: int,
    fn: Callable[[Iterable[_Block]], Iterable[tuple[np.ndarray, np.ndarray]]],
    size: int,
    cfg: WeeklyConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``fn`` (chunks -> (ids, factors)) on one side's partitions only; the dense matrix (rows of ids no
    chunk holds stay zero: nothing references them) and the sorted ids the chunks hold."""
    out = np.zeros((size, cfg.rank), dtype=np.float32)
    nb = cfg.num_blocks
    held = []
    for ids, x in packed.context.runJob(packed, fn, list(range(side * nb, (side + 1) * nb))):
        out[ids] = x
        held.append(ids)
    return out, np.sort(np.concatenate(held)) if held else np.zeros(0, np.int32)


def _share(sc: SparkContext, factors: np.ndarray) -> Any:
    """Broadcast a side's dense factors with their Gram matrix (k x k, float64): one copy serves as the
    fixed side of the next half-iteration and as the warm start of the one after."""
    f = factors.astype(np.float64)
    return sc.broadcast((factors, f.T @ f))


def _solve_dense(
    packed: RDD[_Block], side: int, fixed: Any, warm: Any, size: int, cfg: WeeklyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """One half-iteration with both sides on the driver: every chunk of the side solved against ``fixed``
    (the other side's broadcast factors and Gram matrix) from ``warm`` (this side's broadcast factors, or
    None for zeros); the new factors as a dense matrix and the ids solved."""
    reg, alpha, steps, rank = cfg.reg_param, cfg.alpha, cfg.cg_steps, cfg.rank

    def solve(blocks: Iterable[_Block]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        other, gram = fixed.value
        own = warm.value[0] if warm is not None else None
        for _, _, _, ids, indptr, nbrs, data in blocks:
            x0 = own[ids] if own is not None else np.zeros((len(ids), rank), np.float32)
            yield ids, cg_rows(indptr, nbrs, data, x0, other, gram, reg, alpha, steps)

    return _collect_side(packed, side, solve, size, cfg)


def _needs(solve: DataFrame) -> DataFrame:
    """Join path: the distinct (block, neighbour id) pairs of a state (computed once per fit, cached)."""

    def pairs(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            blocks, nbrs = b.column(_BLOCK).to_pylist(), b.column(_INDICES).to_pylist()
            for block, raw in zip(blocks, nbrs, strict=True):
                ids = np.unique(np.frombuffer(raw, np.int32))
                yield pa.RecordBatch.from_arrays(
                    [pa.array(np.full(len(ids), block, np.int32)), pa.array(ids)], names=[_NEED_BLOCK, _ID]
                )

    return solve.select(_BLOCK, _INDICES).mapInArrow(pairs, f"{_NEED_BLOCK} int, {_ID} int").distinct()


def _gram(fixed: DataFrame, rank: int) -> np.ndarray:
    """Y^T Y as a sum of per-task partial sums (the join path never collects Y), in a fixed order."""

    def partial(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        parts = []
        for b in batches:
            for block, chunk, _, _, _, _, x in _chunks(b, rank):
                y = x.astype(np.float64)
                parts.append(((block, chunk), y.T @ y))
        if parts:
            parts.sort(key=lambda part: part[0])
            g = np.sum([part[1] for part in parts], axis=0)
            first = parts[0][0]
            yield pa.RecordBatch.from_pydict(
                {"b": [first[0]], "c": [first[1]], "g": [g.tobytes()]},
                schema=pa.schema([("b", pa.int32()), ("c", pa.int32()), ("g", pa.binary())]),
            )

    table = (
        fixed.mapInArrow(partial, "b int, c int, g binary").toArrow().sort_by([("b", "ascending"), ("c", "ascending")])
    )
    total = np.zeros((rank, rank))
    for raw in table.column("g").to_pylist():
        total += np.frombuffer(raw, np.float64).reshape(rank, rank)
    return total


def _vectors(fixed: DataFrame, rank: int) -> DataFrame:
    """Join path: the fixed side's factors as (id, vec) rows, vec one factor's float32 bytes."""

    def rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            for _, _, ids, _, _, _, x in _chunks(b, rank):
                offsets = pa.py_buffer(np.arange(0, (len(ids) + 1) * rank * 4, rank * 4, dtype=np.int32).tobytes())
                vec = pa.BinaryArray.from_buffers(pa.binary(), len(ids), [None, offsets, pa.py_buffer(x.tobytes())])
                yield pa.RecordBatch.from_arrays([pa.array(ids, pa.int32()), vec], names=[_ID, _VEC])

    return fixed.mapInArrow(rows, f"{_ID} int, {_VEC} binary")


_JOINED = T.StructType(
    [T.StructField(f.name, f.dataType, True) for f in _STATE.fields]
    + [T.StructField(_ID, T.IntegerType(), True), T.StructField(_VEC, T.BinaryType(), True)]
)
"""Join path: a block's state chunks (``id``, ``vec`` null) and the factor rows it needs (the rest null)."""


def _solve_join(solve: DataFrame, fixed: DataFrame, needs: DataFrame, cfg: WeeklyConfig) -> DataFrame:
    """Join path: each block gets only the factors its ratings reference, shuffled to it by block id.

    The block's state chunks and its factor rows meet in one partition (a union repartitioned by block);
    the task indexes the factors by their position among the block's sorted neighbour ids.
    """
    rank = cfg.rank
    gram = _gram(fixed, rank)
    shipped = needs.join(_vectors(fixed, rank), _ID).select(
        F.col(_NEED_BLOCK).alias(_BLOCK),
        *[F.lit(None).cast(f.dataType).alias(f.name) for f in _STATE.fields[1:]],
        _ID,
        _VEC,
    )
    state = solve.select(*_STATE.names, F.lit(None).cast("int").alias(_ID), F.lit(None).cast("binary").alias(_VEC))
    names = _STATE.names

    def solve_blocks(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        parts = [b for b in batches if b.num_rows]
        if not parts:
            return
        table = pa.Table.from_batches(parts)
        is_factor = table.column(_ID).is_valid()
        factors = table.filter(is_factor)
        chunks = table.filter(pc.invert(is_factor)).sort_by([(_BLOCK, "ascending"), (_CHUNK, "ascending")])
        fblock = np.asarray(factors.column(_BLOCK).to_numpy())
        fid = np.asarray(factors.column(_ID).to_numpy())
        vec = factors.column(_VEC).combine_chunks()
        fvec = (
            np.frombuffer(vec.buffers()[2], np.float32, count=len(vec) * rank, offset=vec.offset * rank * 4).reshape(
                -1, rank
            )
            if len(vec)
            else np.zeros((0, rank), np.float32)
        )
        out = []
        for block in np.unique(np.asarray(chunks.column(_BLOCK).to_numpy())):
            mask = fblock == block
            order = np.argsort(fid[mask], kind="stable")
            ids, other = fid[mask][order], fvec[mask][order]
            part = chunks.filter(pc.equal(chunks.column(_BLOCK), pa.scalar(int(block), pa.int32())))
            batch = pa.RecordBatch.from_arrays(
                [part.column(n).combine_chunks() for n in names], schema=_arrow_schema(_STATE)
            )
            new = []
            for _, _, _, indptr, nbrs, data, x0 in _chunks(batch, rank):
                local = np.searchsorted(ids, nbrs).astype(np.int32)
                new.append(
                    cg_rows(indptr, local, data, x0, other, gram, cfg.reg_param, cfg.alpha, cfg.cg_steps).tobytes()
                )
            out.append(_with_features(batch, new))
        yield from out

    return state.unionByName(shipped).repartition(cfg.num_blocks, _BLOCK).mapInArrow(solve_blocks, _STATE)


__all__ = ["CgRecommender", "cg_model_version", "cg_rows", "cg_solve", "implicit_objective", "initial_factors"]
