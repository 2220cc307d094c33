"""Score several recommenders identically on one split: the one evaluation loop of every model.

The harness is what makes "ALS beats popularity by X" a fair statement: same users, same exclusions
(everything heard in training, as Discover Weekly does), same k, same metrics. Every model goes through the
:class:`~spotrec.evaluation.recommender.Recommender` interface: the ``evaluate`` step scores ALS and the
baselines with it, the ``rnn`` step the RNN methods (:mod:`spotrec.rnn.recommender`) and popularity.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from spotrec import columns as C
from spotrec.evaluation import metrics as M
from spotrec.evaluation.recommender import InteractionRecommender, Recommender
from spotrec.evaluation.split import require_columns

log = logging.getLogger(__name__)


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
    """Wall time of ``fit`` (0 for a model passed already fitted; lazy models do their work in ``recommend``, see
    ``eval_seconds``)."""
    eval_seconds: float = 0.0
    """Wall time of recommending and computing every metric."""
    users: int = 0
    """Users evaluated (those with >= 1 relevant item)."""


def evaluate(
    recommenders: Sequence[Recommender],
    train: DataFrame,
    relevant: DataFrame,
    *,
    k: int,
    n: int,
    exclude_heard: bool = True,
    tracks: DataFrame | None = None,
    next_tracks: DataFrame | None = None,
) -> list[EvalResult]:
    """Score each recommender's top ``n`` for the users of ``relevant``, fitting those that fit on interactions.

    An :class:`~spotrec.evaluation.recommender.InteractionRecommender` is fitted here on ``train``; any other
    :class:`~spotrec.evaluation.recommender.Recommender` comes already fitted on the same training split (e.g.
    the RNN methods, which learn from ordered events: :mod:`spotrec.rnn.recommender`) and is used as given.

    Args:
        recommenders: The models, scored in order.
        train: The training rows (``user_id``, ``track_id``; ``gold.interactions``-shaped for the models fitted
            here). They also give the excluded (heard) pairs and the item popularity behind coverage, novelty
            and popularity bias.
        relevant: ``user_id, track_id`` hits (from :func:`spotrec.evaluation.split.relevant_items`).
        k: Metric cut-off.
        n: Recommendations requested per user; must be >= k.
        exclude_heard: Exclude every (user, track) of ``train`` from recommendations (Discover Weekly).
        tracks: ``silver.tracks`` (``track_id, artist_id``) for artist diversity; skipped when None.
        next_tracks: ``user_id, track_id``, one next track per user (from
            :func:`spotrec.evaluation.split.first_new_tracks`) for the next-track metrics; skipped when None.

    Returns:
        One :class:`EvalResult` per recommender, in input order. Metrics: precision, recall, map, ndcg,
        hit_rate, coverage (of the training catalogue), novelty, popularity_bias and, with ``tracks``,
        artist_diversity; with ``next_tracks``, ``next_track_hit_rate`` and ``next_track_mrr`` at ``k`` and,
        when ``n > k``, the same at ``n`` under the names ``next_track_hit_rate@<n>``, ``next_track_mrr@<n>``.
    """
    if n < k:
        raise ValueError(f"n ({n}) must be >= k ({k}): metrics at k need at least k recommendations")
    require_columns(train, (C.USER_ID, C.TRACK_ID), "train")
    require_columns(relevant, (C.USER_ID, C.TRACK_ID), "relevant")
    if next_tracks is not None:
        require_columns(next_tracks, (C.USER_ID, C.TRACK_ID), "next_tracks")
    # Every model is scored against the same relevant pairs: compute them (a split + anti-join) once.
    relevant = relevant.select(C.USER_ID, C.TRACK_ID).distinct().persist(StorageLevel.MEMORY_AND_DISK)
    users = relevant.select(C.USER_ID).distinct()
    exclude = train.select(C.USER_ID, C.TRACK_ID).distinct() if exclude_heard else None
    popularity = M.item_popularity(train).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n_items = popularity.count()
        n_users = users.count()
        if n_items == 0:
            raise ValueError("train is empty: nothing to fit on")
        results = []
        for recommender in recommenders:
            started = time.perf_counter()
            if isinstance(recommender, InteractionRecommender):
                recommender.fit(train)
            fitted = time.perf_counter()
            recs = recommender.recommend(users, n, exclude).persist(StorageLevel.MEMORY_AND_DISK)
            try:
                scores = M.ranking_metrics(recs, relevant, k)
                scores[M.COVERAGE] = M.catalogue_coverage(recs, n_items, k)
                scores[M.NOVELTY] = M.novelty(recs, popularity, k)
                scores[M.POPULARITY_BIAS] = M.popularity_bias(recs, popularity, k)
                if tracks is not None:
                    scores[M.ARTIST_DIVERSITY] = M.artist_diversity(recs, tracks, k)
                if next_tracks is not None:
                    at = M.next_track_metrics(recs, next_tracks, [k, n])
                    scores.update(at[k])
                    if n != k:
                        scores.update({f"{name}@{n}": v for name, v in at[n].items()})
            finally:
                recs.unpersist()
            log.info("evaluated %s: %s", recommender.name, {m: round(v, 4) for m, v in scores.items()})
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


def format_cell(value: float | None) -> str:
    """A metric as a table cell: 4 decimals, ``-`` when missing or NaN."""
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A fixed-width Markdown table: first column left-aligned, the others right-aligned."""
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
            + " |"
        )

    rule = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


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
    rows = [[r.model, *[format_cell(r.metrics.get(key)) for _, key in _COLUMNS]] for r in results]
    return markdown_table(header, rows)
