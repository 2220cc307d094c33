"""Blocked exact top-N over factor vectors: user blocks x all tracks as one BLAS matmul per block.

MLlib's ``recommendForAllUsers`` crosses user and item blocks and keeps a bounded priority queue per user; it
cannot exclude heard tracks, so Discover Weekly would have to over-fetch and filter. Here the (small) track
factor matrix is broadcast once per executor, each executor scores ``block_size`` users at a time with a single
``numpy`` matmul, masks that user's heard tracks to ``-inf`` and keeps the top ``n`` with ``np.argpartition``.

Results are exact and deterministic: scores are computed in float64, and ties are broken by the smaller
``track_idx`` (also at the cut-off, where ``argpartition`` alone would pick an arbitrary tied track).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spotrec import columns as C

FEATURES = C.FEATURES
"""Factor vector column (array<float>) of the factor frames."""
_EXCLUDE = "_exclude"

TOP_N_SCHEMA = f"{C.USER_IDX} int, {C.TRACK_IDX} int, {C.RANK} int, {C.SCORE} double"
"""Output schema of :func:`top_n_unheard`."""

SIMILAR_SCHEMA = f"{C.TRACK_IDX} int, similar_track_idx int, {C.RANK} int, {C.SCORE} double"
"""Output schema of :func:`top_n_similar`."""


def _to_matrix(vectors: pd.Series | list, dim: int | None = None) -> np.ndarray:
    """Stack array-valued cells into a float64 matrix (rows x rank)."""
    if len(vectors) == 0:
        return np.zeros((0, dim or 0), dtype=np.float64)
    cells = vectors.to_numpy() if isinstance(vectors, pd.Series) else vectors
    return np.vstack(cells).astype(np.float64, copy=False)  # one C-level copy, not one array per row


def _l2_normalise(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0  # a zero vector stays zero (cosine 0 with everything) instead of NaN
    return m / norms


def top_n_rows(scores: np.ndarray, item_ids: np.ndarray, n: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Top ``n`` columns per row of ``scores``, by score descending then item id ascending.

    ``-inf`` entries (masked items) are never returned, so a row may get fewer than ``n`` items.

    Args:
        scores: (rows x items) float64 scores; masked entries are ``-inf``.
        item_ids: item id per column, ascending (the tie-break order).
        n: how many to keep per row.

    Returns:
        One ``(row, ids, scores)`` per row that has at least one finite score, ids in rank order.
    """
    rows, m = scores.shape
    if rows == 0 or m == 0 or n <= 0:
        return []
    k = min(n, m)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (rows, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    # Columns are in ascending item-id order, so the column position is the tie-break key.
    order = np.lexsort((part, -part_scores), axis=1)
    cand = np.take_along_axis(part, order, axis=1)
    cand_scores = np.take_along_axis(part_scores, order, axis=1)
    if k < m:
        # argpartition picks an arbitrary subset of the tracks tied at the cut-off score; redo those rows.
        thresh = cand_scores[:, -1]
        tied_total = (scores == thresh[:, None]).sum(axis=1)
        tied_kept = (cand_scores == thresh[:, None]).sum(axis=1)
        for r in np.flatnonzero((tied_total > tied_kept) & np.isfinite(thresh)).tolist():
            above = np.flatnonzero(scores[r] > thresh[r])
            above = above[np.lexsort((above, -scores[r, above]))]
            at = np.flatnonzero(scores[r] == thresh[r])[: k - len(above)]
            cand[r] = np.concatenate([above, at])
            cand_scores[r] = scores[r, cand[r]]
    out: list[tuple[int, np.ndarray, np.ndarray]] = []
    for r in range(rows):
        finite = np.isfinite(cand_scores[r])
        if finite.any():
            out.append((r, item_ids[cand[r][finite]], cand_scores[r][finite]))
    return out


def _mask(scores: np.ndarray, ids: np.ndarray, excluded: list) -> None:
    """Set ``scores[r, column of id]`` to ``-inf`` for every id in ``excluded[r]`` (in place, one scatter)."""
    lengths = np.fromiter((0 if e is None else len(e) for e in excluded), dtype=np.int64, count=len(excluded))
    if lengths.sum() == 0:
        return
    rows = np.repeat(np.arange(len(excluded)), lengths)
    excl = np.concatenate([np.asarray(e, dtype=np.int64) for e in excluded if e is not None and len(e)])
    pos = np.searchsorted(ids, excl)
    ok = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == excl)
    scores[rows[ok], pos[ok]] = -np.inf


def _top_frame(
    scores: np.ndarray, ids: np.ndarray, n: int, qids: np.ndarray, query_col: str, out_item_col: str
) -> pd.DataFrame | None:
    """The top-n rows of one scored block as the output frame (None when nothing is left)."""
    top = top_n_rows(scores, ids, n)
    if not top:
        return None
    sizes = np.fromiter((len(t[1]) for t in top), dtype=np.int64, count=len(top))
    rows = np.fromiter((t[0] for t in top), dtype=np.int64, count=len(top))
    starts = np.cumsum(sizes) - sizes
    return pd.DataFrame(
        {
            query_col: np.repeat(qids[rows], sizes).astype("int32"),
            out_item_col: np.concatenate([t[1] for t in top]).astype("int32"),
            C.RANK: (np.arange(int(sizes.sum())) - np.repeat(starts, sizes) + 1).astype("int32"),
            C.SCORE: np.concatenate([t[2] for t in top]).astype("float64"),
        }
    )


def _item_matrix(items: DataFrame, id_col: str) -> tuple[np.ndarray, np.ndarray]:
    """Collect (id, features) sorted by id: the broadcast side, rank floats per item."""
    pdf: pd.DataFrame = items.select(F.col(id_col).cast("int").alias("id"), FEATURES).toPandas()
    pdf = pdf.sort_values("id")
    ids = pdf["id"].to_numpy(dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"duplicate {id_col} in the item factors")
    return ids, _to_matrix(pdf[FEATURES].tolist())


def _blocked_top_n(
    queries: DataFrame,
    query_col: str,
    items: DataFrame,
    item_col: str,
    n: int,
    block_size: int,
    *,
    cosine: bool,
    out_item_col: str,
    schema: str,
) -> DataFrame:
    """Score every query row against all items, block by block on the executors.

    ``queries`` has ``query_col``, ``features`` and ``_exclude`` (array<int> of item ids or null).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    spark = queries.sparkSession
    item_ids, item_mat = _item_matrix(items, item_col)
    if cosine:
        item_mat = _l2_normalise(item_mat)
    # One broadcast: each executor fetches the matrix once and every task on it reuses the value.
    bc = spark.sparkContext.broadcast((item_ids, item_mat.T.copy()))

    def score_blocks(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        ids, mat_t = bc.value
        for pdf in batches:
            for start in range(0, len(pdf), block_size):
                block = pdf.iloc[start : start + block_size]
                q = _to_matrix(block[FEATURES].tolist(), mat_t.shape[0])
                if cosine:
                    q = _l2_normalise(q)
                scores = q @ mat_t
                _mask(scores, ids, block[_EXCLUDE].tolist())
                frame = _top_frame(scores, ids, n, block[query_col].to_numpy(), query_col, out_item_col)
                if frame is not None:
                    yield frame

    return queries.select(query_col, FEATURES, _EXCLUDE).mapInPandas(score_blocks, schema)


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
        track_factors: ``track_idx``, ``features``; collected and broadcast (rank x tracks floats).
        heard: ``user_idx``, ``track_idx`` pairs to exclude (e.g. every training interaction), or None.
        n: tracks per user.
        block_size: users scored per matmul; memory per task is about ``block_size * tracks * 8`` bytes.

    Returns:
        ``user_idx, track_idx, rank, score``: rank 1..n (fewer if the user heard nearly everything),
        ties broken by smaller ``track_idx``.
    """
    users = user_factors.select(F.col(C.USER_IDX).cast("int").alias(C.USER_IDX), FEATURES)
    if heard is None:
        queries = users.withColumn(_EXCLUDE, F.lit(None).cast("array<int>"))
    else:
        lists = heard.groupBy(F.col(C.USER_IDX).cast("int").alias(C.USER_IDX)).agg(
            F.collect_list(F.col(C.TRACK_IDX).cast("int")).alias(_EXCLUDE)
        )
        queries = users.join(lists, C.USER_IDX, "left")
    return _blocked_top_n(
        queries,
        C.USER_IDX,
        track_factors,
        C.TRACK_IDX,
        n,
        block_size,
        cosine=False,
        out_item_col=C.TRACK_IDX,
        schema=TOP_N_SCHEMA,
    )


def top_n_similar(track_factors: DataFrame, n: int, block_size: int = 1024) -> DataFrame:
    """Each track's ``n`` most similar other tracks by cosine similarity of their factors.

    Args:
        track_factors: ``track_idx``, ``features``.
        n: neighbours per track (the track itself is excluded).
        block_size: tracks scored per matmul.

    Returns:
        ``track_idx, similar_track_idx, rank, score`` with score the cosine similarity.
    """
    queries = track_factors.select(
        F.col(C.TRACK_IDX).cast("int").alias(C.TRACK_IDX),
        FEATURES,
        F.array(F.col(C.TRACK_IDX).cast("int")).alias(_EXCLUDE),
    )
    return _blocked_top_n(
        queries,
        C.TRACK_IDX,
        track_factors,
        C.TRACK_IDX,
        n,
        block_size,
        cosine=True,
        out_item_col="similar_track_idx",
        schema=SIMILAR_SCHEMA,
    )
