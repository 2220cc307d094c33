"""Blocked exact top-N over factor vectors: user blocks x all tracks as one BLAS matmul per block.

MLlib's ``recommendForAllUsers`` crosses user and item blocks and keeps a bounded priority queue per user; it
cannot exclude heard tracks, so Discover Weekly would have to over-fetch and filter. Here the (small) track
factor matrix is broadcast once per executor as float32 and each task scores ``block_size`` users at a time
with a single ``sgemm``, masks that user's heard tracks to ``-inf`` and keeps the top ``n``.

Where the time goes, and what this module does about it (``benchmarks/topn_bench.py`` measures it):

* **Data in and out**: ``mapInArrow``, not ``mapInPandas``. Factor vectors and heard lists are read from
  the Arrow list buffers (flat values + offsets) with no per-row Python and no pandas object columns; the
  output batch is built from numpy arrays (user id repeated, track ids / ranks / scores flat).
* **Heard tracks**: one shuffle. The user factor rows and the heard (user, track) pairs are unioned,
  hash-partitioned by user and sorted by user within each partition, so each task streams every user's
  factor row together with its heard tracks (no ``collect_list`` aggregation and no separate join).
* **Scores**: float32 ``sgemm`` (half the memory traffic and twice the BLAS rate of float64). The factors
  are float32 already; a score is their dot product rounded to float32 (~7 significant digits), so two
  tracks whose float64 dot products differ by less than that rounding may tie or swap places, and the
  ``score`` column carries float32 precision. Ties are then broken by the smaller ``track_idx``, exactly.
  A block of one user is padded to two rows, because OpenBLAS routes a single row to ``sgemv``, whose
  rounding differs from ``sgemm``'s; with that, a score does not depend on which block a user lands in.
* **Selection**: no ``argpartition``, which costs more than the matmul. Per user, the tracks are split into
  ``G`` strided groups; the ``n``-th largest of the ``G`` group maxima is a lower bound ``t`` on the ``n``-th
  largest score (the ``n`` groups with the largest maxima hold ``n`` distinct scores ``>= t``), so every
  track of the exact top ``n``, ties at the cut-off included, lies in a group whose maximum is ``>= t``.
  Only those groups (about ``n`` of ``G``) are gathered and sorted by (score descending, track id
  ascending). One pass over the scores for the maxima, then work proportional to ``n``.
* **Threads**: BLAS is held to the task's cores (``spark.task.cpus``): Spark already runs one task per core.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import TaskContext
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from threadpoolctl import threadpool_limits

from spotrec import columns as C

FEATURES = C.FEATURES
"""Factor vector column (array<float>) of the factor frames."""
_HEARD = "_heard"

TOP_N_SCHEMA = f"{C.USER_IDX} int, {C.TRACK_IDX} int, {C.RANK} int, {C.SCORE} double"
"""Output schema of :func:`top_n_unheard`."""

SIMILAR_SCHEMA = f"{C.TRACK_IDX} int, similar_track_idx int, {C.RANK} int, {C.SCORE} double"
"""Output schema of :func:`top_n_similar`."""

GROUP_WIDTH = 8
"""Tracks per group in the selection's lower bound (fewer when the catalogue is small next to ``n``)."""


def _list_matrix(column: pa.Array | pa.ChunkedArray, rank: int | None = None) -> np.ndarray:
    """The non-null lists of an Arrow ``list<float>`` column as a float32 (rows x rank) matrix, no per-row Python.

    Null lists (rows that carry no factors) are skipped; every other list must have the same length.
    """
    if isinstance(column, pa.ChunkedArray):
        column = pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], pa.list_(pa.float32()))
    lengths = pc.list_value_length(column).drop_null().to_numpy(zero_copy_only=False)
    values = pc.list_flatten(column)  # the values of the valid lists only, slicing offsets applied
    if values.null_count:
        raise ValueError("factor vectors contain null values")
    if rank is None:
        rank = int(lengths[0]) if len(lengths) else 0
    if len(lengths) and (lengths != rank).any():
        raise ValueError(f"factor vectors of different lengths: expected {rank}, got {sorted(set(lengths.tolist()))}")
    flat = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(lengths), rank)


def _l2_normalise(m: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float64, returned as float32 (a zero row stays zero, cosine 0)."""
    m64 = m.astype(np.float64)
    norms = np.linalg.norm(m64, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    return (m64 / norms).astype(np.float32)


def _check_finite(m: np.ndarray, what: str) -> None:
    if not np.isfinite(m).all():
        raise ValueError(f"{what} factors contain NaN or infinity")


def block_scores(queries: np.ndarray, items_t: np.ndarray) -> np.ndarray:
    """``queries @ items_t`` in float32, the same for a row whichever block it is in (see the module docstring)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if len(q) == 1:
        return (np.vstack([q, q]) @ items_t)[:1]
    return q @ items_t


_NO_KEY = np.iinfo(np.uint64).max


def _desc_key(v: np.ndarray) -> np.ndarray:
    """float32 -> uint32 whose ascending order is the floats' descending order (-0.0 counts as 0.0)."""
    bits = (v + np.float32(0.0)).view(np.uint32)
    asc = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
    return ~asc


def _from_desc_key(d: np.ndarray) -> np.ndarray:
    asc = ~d
    return np.where(asc >> np.uint32(31), asc & np.uint32(0x7FFFFFFF), ~asc).view(np.float32)


def _group_max(scores: np.ndarray, groups: int) -> np.ndarray:
    """Maximum of each strided group: group g holds the columns g, g + groups, g + 2 * groups, ..."""
    rows, m = scores.shape
    full = m // groups  # strides wholly inside the row; a last partial stride holds the rest
    gmax = scores[:, : full * groups].reshape(rows, full, groups).max(axis=1)
    tail = scores[:, full * groups :]
    np.maximum(gmax[:, : tail.shape[1]], tail, out=gmax[:, : tail.shape[1]])
    return gmax


def _group_columns(group: np.ndarray, groups: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The columns of each group in ``group`` (one row of columns per group, padded) and which are real."""
    cols = group[..., None] + groups * np.arange(-(-m // groups))
    return cols, cols < m


def _select_all_ties(scores: np.ndarray, k: int, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top ``k`` (row, column, score) of every row, sorted; gathers every group tied at the bound."""
    m = scores.shape[1]
    gmax = _group_max(scores, groups)
    bound = np.partition(gmax, groups - k, axis=1)[:, groups - k]  # the k-th largest group maximum
    rr, gg = np.nonzero(gmax >= bound[:, None])
    cols, inside = _group_columns(gg, groups, m)
    vals = scores[rr[:, None], np.minimum(cols, m - 1)]
    keep = inside & (vals >= bound[rr][:, None])
    r, c, v = np.broadcast_to(rr[:, None], cols.shape)[keep], cols[keep], vals[keep]
    order = np.lexsort((c, -v, r))
    r, c, v = r[order], c[order], v[order]
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    rank = np.arange(len(r)) - np.repeat(starts, np.diff(np.r_[starts, len(r)]))
    sel = rank < k
    return r[sel], c[sel], v[sel]


def top_n_select(
    scores: np.ndarray, n: int, width: int = GROUP_WIDTH
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact top ``n`` columns per row of float32 ``scores``: score descending, then column ascending.

    ``-inf`` entries (masked items) are never returned, so a row may get fewer than ``n``. Scores must not
    be NaN. The ``k = min(n, items)`` groups with the largest maxima are gathered (``k * width`` scores per
    row) and sorted on one 64-bit key per score (the score's order bits, then the column). That is exact
    unless another group's maximum equals the bound (a tie at the cut-off, or fewer than ``k`` finite
    groups); such rows take the slower path that gathers every group tied at the bound.

    Args:
        scores: (rows x items) float32 scores, items in ascending id order (the column is the tie-break key).
        n: how many to keep per row.
        width: columns per group for the lower bound (the module docstring explains the bound).

    Returns:
        ``(row, column, rank, score)`` flat arrays in (row, rank) order, rank 1.. within each row.
    """
    if scores.dtype != np.float32:
        raise TypeError(f"scores must be float32, got {scores.dtype}")
    rows, m = scores.shape
    k = min(n, m)
    if rows == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    w = max(1, min(width, m // (2 * k)))  # at least 2k groups, so the bound stays close to the k-th score
    groups = -(-m // w)
    cols = np.zeros((rows, k), np.int64)
    vals = np.zeros((rows, k), np.float32)
    found = np.zeros((rows, k), bool)
    tied = np.ones(rows, bool)
    if groups > k:
        gmax = _group_max(scores, groups)
        part = np.argpartition(gmax, groups - k - 1, axis=1)
        top = part[:, groups - k :]  # the k largest group maxima; part[:, groups - k - 1] is the next one
        bound = np.take_along_axis(gmax, top, axis=1).min(axis=1)
        tied = np.take_along_axis(gmax, part[:, groups - k - 1 : groups - k], axis=1)[:, 0] == bound
        gcols, inside = _group_columns(top, groups, m)
        gcols, inside = gcols.reshape(rows, -1), inside.reshape(rows, -1)
        gvals = np.take(scores.ravel(), np.where(inside, gcols + (np.arange(rows) * m)[:, None], 0))
        key = (_desc_key(gvals).astype(np.uint64) << np.uint64(32)) | gcols.astype(np.uint64)
        key[~inside] = _NO_KEY
        if key.shape[1] > k:
            key = np.partition(key, k - 1, axis=1)[:, :k]
        key = np.sort(key, axis=1)
        cols = (key & np.uint64(0xFFFFFFFF)).astype(np.int64)
        vals = _from_desc_key((key >> np.uint64(32)).astype(np.uint32))
        found = key != _NO_KEY
    if tied.any():
        t_rows = np.flatnonzero(tied)
        r, c, v = _select_all_ties(scores[t_rows], k, groups)
        found[t_rows] = False
        rank = np.arange(len(r)) - np.searchsorted(r, r, "left")
        cols[t_rows[r], rank], vals[t_rows[r], rank], found[t_rows[r], rank] = c, v, True
    found &= np.isfinite(vals)  # -inf sorts last, so the kept entries are ranks 1.. of their row
    r_out = np.broadcast_to(np.arange(rows)[:, None], found.shape)[found]
    rank_out = np.broadcast_to(np.arange(1, k + 1), found.shape)[found]
    return r_out, cols[found], rank_out, vals[found]


def score_block(
    queries: np.ndarray,
    query_ids: np.ndarray,
    items_t: np.ndarray,
    item_ids: np.ndarray,
    n: int,
    mask_rows: np.ndarray,
    mask_items: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top ``n`` items per query row, never an item of ``(mask_rows[i], mask_items[i])``.

    Args:
        queries: (rows x rank) query factors; ``query_ids`` their ids.
        items_t: (rank x items) float32 item factors, columns in ascending ``item_ids`` order.
        item_ids: item id per column, ascending (the tie-break order).
        n: items per query.
        mask_rows, mask_items: row position and item id of each pair to exclude (ids missing from
            ``item_ids`` are ignored).

    Returns:
        ``(query_id, item_id, rank, score)`` flat arrays, rank 1..n per query.
    """
    scores = block_scores(queries, items_t)
    if len(mask_rows):
        m = len(item_ids)
        if item_ids[0] == 0 and item_ids[-1] == m - 1:  # ids 0..m-1 (sorted, unique): the id is the column
            pos, ok = mask_items, (mask_items >= 0) & (mask_items < m)
        else:
            pos = np.searchsorted(item_ids, mask_items)
            ok = (pos < m) & (item_ids[np.minimum(pos, m - 1)] == mask_items)
        scores[mask_rows[ok], pos[ok]] = -np.inf
    r, c, rank, v = top_n_select(scores, n)
    return query_ids[r], item_ids[c], rank, v


def _batch(
    names: tuple[str, str], qid: np.ndarray, iid: np.ndarray, rank: np.ndarray, score: np.ndarray
) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.array(qid.astype(np.int32, copy=False)),
            pa.array(iid.astype(np.int32, copy=False)),
            pa.array(rank.astype(np.int32, copy=False)),
            pa.array(score.astype(np.float64)),
        ],
        names=[names[0], names[1], C.RANK, C.SCORE],
    )


def _blas_threads() -> threadpool_limits:
    """A context holding BLAS to this task's cores (Spark runs one task per core; more threads oversubscribe)."""
    ctx = TaskContext.get()
    return threadpool_limits(limits=ctx.cpus() if ctx is not None else 1, user_api="blas")


HEARD_BUFFER = 1 << 20
"""Heard pairs a task groups at once, and buffers before it drops those of users without factors (bounds memory)."""


def _pack(users: np.ndarray, tracks: np.ndarray) -> pa.RecordBatch:
    # One 64-bit key per pair (user high, track low) and one sort: numpy's SIMD sort, ~10x a stable argsort.
    key = np.sort((users.astype(np.int64) << 32) | tracks.astype(np.uint32).astype(np.int64))
    users = (key >> 32).astype(np.int32)
    tracks = (key & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    offsets = pa.array(np.r_[starts, len(users)].astype(np.int32))
    return pa.RecordBatch.from_arrays(
        [pa.array(users[starts]), pa.ListArray.from_arrays(offsets, pa.array(tracks))], names=[C.USER_IDX, _HEARD]
    )


def pack_heard_batches(batches: Iterator[pa.RecordBatch], buffer: int) -> Iterator[pa.RecordBatch]:
    """(user, track) batches -> (user, list of tracks) batches: one row per user per ``buffer`` pairs read.

    Spark's own ``collect_list`` aggregation (or a shuffle and sort of every pair) costs more per pair than
    the matmul costs per user; here each task groups up to ``buffer`` pairs with one numpy sort, so the
    shuffle that follows moves a list per user and task instead of every pair. Null ids are dropped; each
    list is sorted by track.
    """
    users: list[np.ndarray] = []
    tracks: list[np.ndarray] = []
    count = 0
    for batch in batches:
        valid = pc.and_(pc.is_valid(batch.column(0)), pc.is_valid(batch.column(1)))
        if valid.false_count:
            batch = batch.filter(valid)
        users.append(batch.column(0).to_numpy(zero_copy_only=False).astype(np.int32))
        tracks.append(batch.column(1).to_numpy(zero_copy_only=False).astype(np.int32))
        count += batch.num_rows
        if count >= buffer:
            yield _pack(np.concatenate(users), np.concatenate(tracks))
            users, tracks, count = [], [], 0
    if count:
        yield _pack(np.concatenate(users), np.concatenate(tracks))


def pack_heard(heard: DataFrame) -> DataFrame:
    """``user_idx, _heard`` (array<int>): the heard pairs grouped per user within each task (see above)."""
    buffer = HEARD_BUFFER
    pairs = heard.select(F.col(C.USER_IDX).cast("int"), F.col(C.TRACK_IDX).cast("int"))
    return pairs.mapInArrow(
        lambda batches: pack_heard_batches(batches, buffer), f"{C.USER_IDX} int, {_HEARD} array<int>"
    )


class _UserStream:
    """Cuts a stream of Arrow batches sorted by user into blocks of complete users for :func:`score_block`.

    Each batch has ``user_idx``, ``features`` (null on a heard row) and a list of heard tracks (null on a
    factor row; a user may have several such rows). The stream is sorted by user, so a user is complete once
    a row of a later user has been seen. Blocks hold ``block_size`` users (the last one fewer); heard pairs
    of users without a factor row are dropped. Memory: about two blocks of users with their heard lists, or
    :data:`HEARD_BUFFER` pairs.
    """

    def __init__(self, rank: int, block_size: int) -> None:
        self.rank = rank
        self.block_size = block_size
        self.users: list[np.ndarray] = []
        self.factors: list[np.ndarray] = []
        self.heard_users: list[np.ndarray] = []
        self.heard_tracks: list[np.ndarray] = []
        self.pending = 0  # factor rows buffered
        self.pending_heard = 0
        self.heard_trigger = HEARD_BUFFER
        self.done = np.iinfo(np.int64).min  # the last user handed out in a block

    def add(self, batch: pa.RecordBatch) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Buffer one batch; yield the blocks it completes."""
        if batch.num_rows == 0:
            return
        uid = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
        feats = batch.column(1)
        is_factor = feats.is_valid().to_numpy(zero_copy_only=False)
        mat = _list_matrix(feats, self.rank)
        _check_finite(mat, "user")
        heard = batch.column(2)
        lengths = pc.list_value_length(heard).fill_null(0).to_numpy(zero_copy_only=False)
        self.users.append(uid[is_factor])
        self.factors.append(mat)
        self.heard_users.append(np.repeat(uid, lengths))
        self.heard_tracks.append(pc.list_flatten(heard).to_numpy(zero_copy_only=False).astype(np.int64))
        self.pending += len(mat)
        self.pending_heard += int(lengths.sum())
        if self.pending >= 2 * self.block_size or self.pending_heard >= self.heard_trigger:
            yield from self._flush(int(uid[-1]))

    def finish(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield the remaining users (the stream has ended, so every user is complete)."""
        if self.users:
            yield from self._flush(None)

    def _flush(self, last_seen: int | None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        uid = np.concatenate(self.users)
        mat = np.concatenate(self.factors)
        hu = np.concatenate(self.heard_users)
        ht = np.concatenate(self.heard_tracks)
        if len(uid) and (uid[0] <= self.done or (uid[1:] == uid[:-1]).any()):
            raise ValueError(f"duplicate {C.USER_IDX} in the user factors")
        final = last_seen is None
        ready = len(uid) if last_seen is None else int(np.searchsorted(uid, last_seen, "left"))
        take = ready if final else ready - ready % self.block_size
        for lo in range(0, take, self.block_size):
            hi = min(lo + self.block_size, take)
            block = uid[lo:hi]
            h_lo, h_hi = np.searchsorted(hu, block[0], "left"), np.searchsorted(hu, block[-1], "right")
            bu, bt = hu[h_lo:h_hi], ht[h_lo:h_hi]
            rows = np.searchsorted(block, bu)
            ok = (rows < len(block)) & (block[np.minimum(rows, len(block) - 1)] == bu)
            yield mat[lo:hi], block, rows[ok], bt[ok]
        if take:
            self.done = int(uid[take - 1])
        rest = uid[take:]
        keep = np.zeros(len(hu), dtype=bool)
        if last_seen is not None:  # keep the pairs of buffered users and of users not complete yet
            if len(rest):
                pos = np.minimum(np.searchsorted(rest, hu), len(rest) - 1)
                keep = rest[pos] == hu
            keep |= hu >= last_seen
        self.users, self.factors = [rest], [mat[take:]]
        self.heard_users, self.heard_tracks = [hu[keep]], [ht[keep]]
        self.pending, self.pending_heard = len(rest), int(keep.sum())
        self.heard_trigger = max(HEARD_BUFFER, 2 * self.pending_heard)


def _item_matrix(items: DataFrame, id_col: str) -> tuple[np.ndarray, np.ndarray]:
    """Collect (id, features) sorted by id: the broadcast side, rank float32 values per item."""
    table = items.select(F.col(id_col).cast("int").alias("id"), FEATURES).toArrow()
    ids = table.column("id").to_numpy().astype(np.int64)
    mat = _list_matrix(table.column(FEATURES))
    if len(mat) != len(ids):
        raise ValueError(f"null {FEATURES} in the item factors")
    order = np.argsort(ids, kind="stable")
    ids, mat = ids[order], mat[order]
    if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
        raise ValueError(f"duplicate {id_col} in the item factors")
    _check_finite(mat, "item")
    return ids, mat


def _broadcast_items(items: DataFrame, id_col: str, *, cosine: bool) -> object:
    """One broadcast of (ids, rank x items float32): each executor fetches it once, every task reuses it."""
    ids, mat = _item_matrix(items, id_col)
    if cosine:
        mat = _l2_normalise(mat)
    return items.sparkSession.sparkContext.broadcast((ids, np.ascontiguousarray(mat.T)))


def _check_args(n: int, block_size: int) -> None:
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")


def top_n_unheard(
    user_factors: DataFrame,
    track_factors: DataFrame,
    heard: DataFrame | None,
    n: int,
    block_size: int = 1024,
) -> DataFrame:
    """Exact top-``n`` tracks per user by dot product, never returning a heard track.

    Args:
        user_factors: ``user_idx``, ``features`` (array<float>), one row per user to score.
        track_factors: ``track_idx``, ``features``; collected and broadcast (rank x tracks float32).
        heard: ``user_idx``, ``track_idx`` pairs to exclude (e.g. every training interaction), or None.
            Pairs of users absent from ``user_factors`` are ignored.
        n: tracks per user.
        block_size: users scored per matmul; memory per task is about ``block_size * tracks * 4`` bytes.

    Returns:
        ``user_idx, track_idx, rank, score``: rank 1..n (fewer if the user heard nearly everything),
        ties broken by smaller ``track_idx``; scores are float32 dot products (see the module docstring).
    """
    _check_args(n, block_size)
    bc = _broadcast_items(track_factors, C.TRACK_IDX, cosine=False)
    names = (C.USER_IDX, C.TRACK_IDX)
    users = user_factors.select(F.col(C.USER_IDX).cast("int").alias(C.USER_IDX), FEATURES)
    if heard is None:

        def score_users(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            ids, items_t = bc.value  # type: ignore[attr-defined]
            none = np.zeros(0, np.int64)
            with _blas_threads():
                for batch in batches:
                    uid = batch.column(0).to_numpy(zero_copy_only=False)
                    mat = _list_matrix(batch.column(1), items_t.shape[0])
                    if len(mat) != len(uid):
                        raise ValueError(f"null {FEATURES} in the user factors")
                    _check_finite(mat, "user")
                    for lo in range(0, len(uid), block_size):
                        out = score_block(
                            mat[lo : lo + block_size], uid[lo : lo + block_size], items_t, ids, n, none, none
                        )
                        yield _batch(names, *out)

        return users.mapInArrow(score_users, TOP_N_SCHEMA)

    # One shuffle: factor rows (heard null) and packed heard lists (features null) by user, sorted by user.
    stream = (
        users.withColumn(_HEARD, F.lit(None).cast("array<int>"))
        .unionByName(pack_heard(heard).withColumn(FEATURES, F.lit(None).cast("array<float>")))
        .repartition(C.USER_IDX)
        .sortWithinPartitions(C.USER_IDX)
    )

    def score_stream(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, items_t = bc.value  # type: ignore[attr-defined]
        buf = _UserStream(items_t.shape[0], block_size)
        with _blas_threads():
            for batch in batches:
                for block in buf.add(batch):
                    yield _batch(names, *score_block(*block[:2], items_t, ids, n, *block[2:]))
            for block in buf.finish():
                yield _batch(names, *score_block(*block[:2], items_t, ids, n, *block[2:]))

    return stream.mapInArrow(score_stream, TOP_N_SCHEMA)


def top_n_similar(track_factors: DataFrame, n: int, block_size: int = 1024) -> DataFrame:
    """Each track's ``n`` most similar other tracks by cosine similarity of their factors.

    Args:
        track_factors: ``track_idx``, ``features``.
        n: neighbours per track (the track itself is excluded).
        block_size: tracks scored per matmul.

    Returns:
        ``track_idx, similar_track_idx, rank, score`` with score the cosine similarity (float32 precision).
    """
    _check_args(n, block_size)
    bc = _broadcast_items(track_factors, C.TRACK_IDX, cosine=True)
    names = (C.TRACK_IDX, "similar_track_idx")

    def score_tracks(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, items_t = bc.value  # type: ignore[attr-defined]
        with _blas_threads():
            for batch in batches:
                tid = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64)
                mat = _list_matrix(batch.column(1), items_t.shape[0])
                if len(mat) != len(tid):
                    raise ValueError(f"null {FEATURES} in the track factors")
                _check_finite(mat, "track")
                mat = _l2_normalise(mat)
                for lo in range(0, len(tid), block_size):
                    q = tid[lo : lo + block_size]
                    out = score_block(mat[lo : lo + block_size], q, items_t, ids, n, np.arange(len(q)), q)
                    yield _batch(names, *out)

    query = track_factors.select(F.col(C.TRACK_IDX).cast("int").alias(C.TRACK_IDX), FEATURES)
    return query.mapInArrow(score_tracks, SIMILAR_SCHEMA)
