"""Driver-side next-track comparison of the taste RNN against simple baselines (exact ranking, numpy).

The task: given a history (the songs before position t), rank all songs; a hit@k is the true song t among
the first k, and MRR averages 1 / its rank (0 when it is outside the ranked list), as
:func:`spotrec.evaluation.metrics.next_track_metrics_arrays` defines them. Baselines use the same song
vectors or none:

- ``last_track``: the neighbours of the last song's vector (item-to-item word2vec);
- ``mean_history``: the neighbours of the mean of the history's vectors (the paper's simplest taste vector);
- ``popularity``: the most frequent songs in training.

Exact ranking is one BLAS product per chunk of queries (the catalogues here are thousands of songs); the
served path uses Annoy (see :mod:`spotrec.rnn.ann`). This is for query sets that are not users of a split,
such as the Yes.com playlist benchmark (``benchmarks/yes_eval.py``); the pipeline's last-week comparison
scores the same methods per user through the harness (:mod:`spotrec.rnn.week_eval`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spotrec.evaluation.metrics import next_track_metrics_arrays
from spotrec.rnn.taste_rnn import TasteRNN, predict_taste, retrieval_query, retrieval_space


def rank_by_vectors(
    queries: np.ndarray,
    vectors: np.ndarray,
    k: int,
    exclude: Sequence[Sequence[int]] | None = None,
    chunk: int = 2048,
    metric: str = "cosine",
) -> np.ndarray:
    """Exact top-``k`` songs by cosine (or inner product, ``metric="dot"``) to each query, skipping ``exclude``.

    Returns:
        (queries, k) song ids, best first; -1 in slots left empty when fewer than ``k`` songs remain.
    """
    if metric not in ("cosine", "dot"):
        raise ValueError(f"metric must be 'cosine' or 'dot', got {metric!r}")
    cosine = metric == "cosine"
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12) if cosine else vectors
    k = min(k, len(vectors))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        if cosine:
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        scores = q @ unit.T
        if exclude is not None:
            for row, items in enumerate(exclude[start : start + chunk]):
                valid = [i for i in items if 0 <= i < len(vectors)]
                scores[row, valid] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        ranked = np.take_along_axis(part, order, axis=1)
        # Excluded songs only fill the list when fewer than k others exist: mark those slots empty (-1).
        ranked[np.take_along_axis(top_scores, order, axis=1) == -np.inf] = -1
        out[start : start + chunk] = ranked
    return out


def rank_by_popularity(
    counts: np.ndarray, n_queries: int, k: int, exclude: Sequence[Sequence[int]] | None = None
) -> np.ndarray:
    """The ``k`` most frequent songs for every query, skipping each query's ``exclude`` songs."""
    order = np.argsort(-np.asarray(counts), kind="stable")
    if exclude is None:
        return np.tile(order[:k], (n_queries, 1))
    head = order[: k + max((len(e) for e in exclude), default=0)]
    out = np.full((n_queries, min(k, len(order))), -1, dtype=np.int64)  # -1: no song left for this slot
    for row, items in enumerate(exclude):
        banned = set(items)
        kept = [i for i in head if i not in banned][: out.shape[1]]
        out[row, : len(kept)] = kept
    return out


def evaluate_next_track(
    histories: Sequence[np.ndarray],
    targets: np.ndarray,
    vectors: np.ndarray,
    counts: np.ndarray,
    model: TasteRNN | None = None,
    ks: Sequence[int] = (10, 50, 100),
    exclude_history: bool = True,
) -> dict[str, dict[str, float]]:
    """hit@k and MRR of the RNN (when given) and the three baselines on (history -> next song) queries.

    Args:
        histories: token arrays, oldest first, each non-empty (typically the last ``n`` songs).
        targets: the true next tokens (-1 for a song outside the vocabulary: a miss for every method).
        vectors: song vectors, row = token.
        counts: training frequency per token (the popularity baseline).
        model: the trained taste RNN.
        ks: cut-offs.
        exclude_history: never rank a song of the query's own history (it was just played).

    Returns:
        method -> metric -> value.
    """
    if any(len(h) == 0 for h in histories):
        raise ValueError("every history needs at least one song")
    k = max(ks)
    exclude = [list(h) for h in histories] if exclude_history else None
    results: dict[str, dict[str, float]] = {}
    if model is not None:
        tastes = predict_taste(model, vectors, list(histories))
        items, metric = retrieval_space(model, vectors)  # softmax: [vector, bias] . [taste, 1]
        queries = retrieval_query(model.spec.loss, tastes)
        ranked = rank_by_vectors(queries, items, k, exclude, metric="dot" if metric == "dot" else "cosine")
        results["rnn"] = next_track_metrics_arrays(ranked, targets, ks)
    last = np.stack([vectors[h[-1]] for h in histories])
    results["last_track"] = next_track_metrics_arrays(rank_by_vectors(last, vectors, k, exclude), targets, ks)
    mean = np.stack([vectors[h].mean(axis=0) for h in histories])
    results["mean_history"] = next_track_metrics_arrays(rank_by_vectors(mean, vectors, k, exclude), targets, ks)
    results["popularity"] = next_track_metrics_arrays(
        rank_by_popularity(counts, len(histories), k, exclude), targets, ks
    )
    return results
