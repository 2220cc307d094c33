"""Fit several recommenders on one training set and score them identically against one relevance set.

The harness is what makes "ALS beats popularity by X" a fair statement: same users, same exclusions
(everything heard in training, as Discover Weekly does), same k, same metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from spotrec import columns as C
from spotrec.evaluation import metrics as M
from spotrec.evaluation.split import require_columns
from spotrec.recommender import Recommender


@dataclass
class EvalResult:
    """One recommender's scores on one evaluation."""

    model: str
    """The recommender's ``name``."""
    k: int
    """Cut-off of every metric."""
    n: int
    """How many recommendations were asked for per user (>= k)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Metric name (constants in :mod:`spotrec.evaluation.metrics`) to value."""
    fit_seconds: float = 0.0
    """Wall time of ``fit`` (lazy models do their work in ``recommend``; see ``eval_seconds``)."""
    eval_seconds: float = 0.0
    """Wall time of recommending and computing every metric."""
    users: int = 0
    """Users evaluated (those with >= 1 relevant item)."""


def evaluate(
    recommenders: Sequence[Recommender],
    train_interactions: DataFrame,
    relevant: DataFrame,
    *,
    k: int,
    n: int,
    exclude_heard: bool = True,
    tracks: DataFrame | None = None,
) -> list[EvalResult]:
    """Fit each recommender on ``train_interactions`` and score its top ``n`` for the users of ``relevant``.

    Args:
        recommenders: Models implementing :class:`spotrec.recommender.Recommender` (fitted here).
        train_interactions: ``gold.interactions``-shaped training rows.
        relevant: ``user_id, track_id`` hits (from :func:`spotrec.evaluation.split.relevant_items`).
        k: Metric cut-off.
        n: Recommendations requested per user; must be >= k.
        exclude_heard: Exclude every (user, track) of the training set from recommendations (Discover Weekly).
        tracks: ``silver.tracks`` (``track_id, artist_id``) for artist diversity; skipped when None.

    Returns:
        One :class:`EvalResult` per recommender, in input order. Metrics: precision, recall, map, ndcg,
        hit_rate, coverage (of the training catalogue), novelty, popularity_bias and, with ``tracks``,
        artist_diversity.
    """
    if n < k:
        raise ValueError(f"n ({n}) must be >= k ({k}): metrics at k need at least k recommendations")
    require_columns(train_interactions, (C.USER_ID, C.TRACK_ID), "train_interactions")
    require_columns(relevant, (C.USER_ID, C.TRACK_ID), "relevant")
    # Every model is scored against the same relevant pairs: compute them (a split + anti-join) once.
    relevant = relevant.select(C.USER_ID, C.TRACK_ID).distinct().persist(StorageLevel.MEMORY_AND_DISK)
    users = relevant.select(C.USER_ID).distinct()
    exclude = train_interactions.select(C.USER_ID, C.TRACK_ID).distinct() if exclude_heard else None
    popularity = M.item_popularity(train_interactions).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n_items = popularity.count()
        n_users = users.count()
        if n_items == 0:
            raise ValueError("train_interactions is empty: nothing to fit on")
        results = []
        for recommender in recommenders:
            started = time.perf_counter()
            recommender.fit(train_interactions)
            fitted = time.perf_counter()
            recs = recommender.recommend(users, n, exclude).persist(StorageLevel.MEMORY_AND_DISK)
            try:
                scores = M.ranking_metrics(recs, relevant, k)
                scores[M.COVERAGE] = M.catalogue_coverage(recs, n_items, k)
                scores[M.NOVELTY] = M.novelty(recs, popularity, k)
                scores[M.POPULARITY_BIAS] = M.popularity_bias(recs, popularity, k)
                if tracks is not None:
                    scores[M.ARTIST_DIVERSITY] = M.artist_diversity(recs, tracks, k)
            finally:
                recs.unpersist()
            results.append(
                EvalResult(
                    model=recommender.name,
                    k=k,
                    n=n,
                    metrics=scores,
                    fit_seconds=fitted - started,
                    eval_seconds=time.perf_counter() - fitted,
                    users=n_users,
                )
            )
        return results
    finally:
        popularity.unpersist()
        relevant.unpersist()


def results_frame(
    spark: SparkSession,
    results: Sequence[EvalResult],
    *,
    run_id: str,
    dataset: str,
    model_version: str | None = None,
) -> DataFrame:
    """All results as ``ops.model_metrics`` rows (append them with ``Storage.append(MODEL_METRICS, ...)``)."""
    if not results:
        raise ValueError("no results to write")
    frames = [M.metrics_frame(spark, run_id, r.model, model_version, dataset, r.metrics, r.k) for r in results]
    return reduce(DataFrame.unionByName, frames)


_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ndcg@{k}", M.NDCG),
    ("map@{k}", M.MAP),
    ("precision@{k}", M.PRECISION),
    ("recall@{k}", M.RECALL),
    ("hit@{k}", M.HIT_RATE),
    ("coverage", M.COVERAGE),
    ("novelty", M.NOVELTY),
    ("artist diversity", M.ARTIST_DIVERSITY),
)


def _cell(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def format_table(results: Sequence[EvalResult]) -> str:
    """A Markdown table, one row per model.

    Columns: model | ndcg@k | map@k | precision@k | recall@k | hit@k | coverage | novelty | artist diversity.
    Missing metrics (e.g. artist diversity without track metadata) print as ``-``.
    """
    if not results:
        return "(no results)"
    ks = sorted({r.k for r in results})
    k_label = str(ks[0]) if len(ks) == 1 else "k"
    header = ["model", *[title.format(k=k_label) for title, _ in _COLUMNS]]
    rows = [[r.model, *[_cell(r.metrics.get(key)) for _, key in _COLUMNS]] for r in results]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
            + " |"
        )

    rule = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
