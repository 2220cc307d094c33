"""Ranking, next-track and beyond-accuracy metrics for top-k recommendations, computed in Spark.

Every metric is a join / window / aggregation over the recommendation and relevance frames; only the final
averages (one row) reach the driver, so evaluation scales with the cluster like the models do.

Inputs:

- ``recs``: ``user_id, track_id, rank`` (1-based, unique per user), ``score`` (what
  :meth:`spotrec.evaluation.recommender.Recommender.recommend` returns). Only ``rank <= k`` is looked at.
- ``relevant``: ``user_id, track_id``, the held-out items that count as hits (see
  :func:`spotrec.evaluation.split.relevant_items`; for the next-track metrics one per user, see
  :func:`spotrec.evaluation.split.first_new_tracks`).
- ``item_popularity``: from :func:`item_popularity` over the *training* interactions.

Reciprocal rank, defined once: for a user u with relevant set R_u, let r_u be the rank of the first item of
R_u in u's list (none when no item of R_u is in the top ``k``). Then hit@k = 1 if r_u <= k else 0 and
RR@k = 1 / r_u if r_u <= k else 0; hit rate@k and MRR@k average them over the users of ``relevant``.
:func:`hit_rate_and_mrr` computes them in Spark, :func:`next_track_metrics` names them for the next-track
task, and :func:`next_track_metrics_arrays` is the same definition on numpy arrays of ranked ids (the
driver-side Yes.com benchmark, whose queries are playlist prefixes, not users).

Metric names (the keys of the returned dicts, the ``metric`` column of ``ops.model_metrics``, with ``k`` in
its own column) are the module constants below.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.evaluation.split import require_columns
from spotrec.features.ordinal import global_running_sum
from spotrec.tables import MODEL_METRICS

PRECISION = "precision"
RECALL = "recall"
MAP = "map"
NDCG = "ndcg"
HIT_RATE = "hit_rate"
COVERAGE = "coverage"
NOVELTY = "novelty"
POPULARITY_BIAS = "popularity_bias"
ARTIST_DIVERSITY = "artist_diversity"
MRR = "mrr"
NEXT_HIT_RATE = "next_track_hit_rate"
"""Share of users whose next track (e.g. first new track of the test week) is in their top k."""
NEXT_MRR = "next_track_mrr"
"""Mean of 1 / rank of the user's next track (0 when outside the top k)."""

N_USERS = "n_users"
"""item_popularity: distinct training users who played the track."""
SHARE = "share"
"""item_popularity: n_users / all distinct training users."""
POPULARITY_PERCENTILE = "popularity_percentile"
"""item_popularity: share of other catalogue tracks strictly less popular, in [0, 1] (``percent_rank``)."""

_RECS_COLUMNS = (C.USER_ID, C.TRACK_ID, C.RANK)


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")


def _top_k(recs: DataFrame, k: int) -> DataFrame:
    _check_k(k)
    require_columns(recs, _RECS_COLUMNS, "recs")
    return recs.where(F.col(C.RANK) <= k)


def ranking_metrics(recs: DataFrame, relevant: DataFrame, k: int) -> dict[str, float]:
    """Precision, recall, MAP, NDCG and hit rate at ``k``, averaged over users with >= 1 relevant item.

    Per user u with relevant set R_u (|R_u| >= 1) and hits h_i in {0, 1} at ranks i = 1..k:

    - precision@k = sum(h_i) / k (a list shorter than k is penalised, as in Spark's ``RankingMetrics``);
    - recall@k = sum(h_i) / |R_u|;
    - AP@k = sum_i h_i * (hits in ranks 1..i) / i, divided by min(k, |R_u|), so a perfect list scores 1;
    - NDCG@k = sum_i h_i / log2(i + 1) over the ideal sum_{i=1..min(k, |R_u|)} 1 / log2(i + 1);
    - hit rate@k = 1 if any hit else 0.

    Users of ``relevant`` with no recommendations score 0 on all; users of ``recs`` without relevant items are
    ignored.

    Cross-checked against ``pyspark.ml.evaluation.RankingEvaluator`` (``precisionAtK``, ``recallAtK``,
    ``ndcgAtK``, ``meanAveragePrecisionAtK``; ``tests/test_ranking_evaluator.py``): given one row per user of
    ``relevant`` (predictions in rank order, relevant items), the four are equal; Spark's definitions are the
    ones above (binary gains, AP over min(k, |R_u|), precision over k). The one difference is which users are
    averaged: RankingEvaluator averages over its input rows, so a row with no relevant items scores 0 and
    counts, while here such users are left out.

    Args:
        recs: ``user_id, track_id, rank`` (1-based, unique per user).
        relevant: ``user_id, track_id`` pairs that count as hits.
        k: Cut-off.

    Returns:
        ``{PRECISION, RECALL, MAP, NDCG, HIT_RATE}`` to float.

    Raises:
        SchemaMismatchError: a column is missing.
        ValueError: ``relevant`` is empty (there is nothing to score against) or ``k`` < 1.
    """
    top = _top_k(recs, k).select(C.USER_ID, C.TRACK_ID, F.col(C.RANK).cast("int").alias(C.RANK))
    require_columns(relevant, (C.USER_ID, C.TRACK_ID), "relevant")
    rel = (
        relevant.select(C.USER_ID, C.TRACK_ID)
        .where(F.col(C.USER_ID).isNotNull() & F.col(C.TRACK_ID).isNotNull())
        .distinct()
    )
    if rel.isEmpty():
        raise ValueError(
            "relevant is empty: no (user, track) test pairs to score against; check the split (e.g. a test "
            "period with no new tracks for any training user)"
        )
    n_rel = rel.groupBy(C.USER_ID).agg(F.count(F.lit(1)).alias("_n_rel"))
    cumulative = Window.partitionBy(C.USER_ID).orderBy(C.RANK).rowsBetween(Window.unboundedPreceding, 0)
    hits = (
        top.join(n_rel.select(C.USER_ID), [C.USER_ID], "left_semi")
        .join(rel.withColumn("_hit", F.lit(1)), [C.USER_ID, C.TRACK_ID], "left")
        .withColumn("_hit", F.coalesce(F.col("_hit"), F.lit(0)))
        .withColumn("_cum", F.sum("_hit").over(cumulative))
    )
    per_user = hits.groupBy(C.USER_ID).agg(
        F.sum("_hit").alias("_hits"),
        F.sum(F.col("_hit") / F.log2(F.col(C.RANK) + 1)).alias("_dcg"),
        F.sum(F.col("_hit") * F.col("_cum") / F.col(C.RANK)).alias("_ap_sum"),
    )
    cap = F.least(F.lit(k), F.col("_n_rel"))
    idcg = F.aggregate(F.sequence(F.lit(1), cap), F.lit(0.0), lambda acc, i: acc + 1.0 / F.log2(i + 1))
    scored = (
        n_rel.join(per_user, [C.USER_ID], "left")
        .fillna(0, subset=["_hits", "_dcg", "_ap_sum"])
        .select(
            (F.col("_hits") / k).alias(PRECISION),
            (F.col("_hits") / F.col("_n_rel")).alias(RECALL),
            (F.col("_ap_sum") / cap).alias(MAP),
            (F.col("_dcg") / idcg).alias(NDCG),
            (F.col("_hits") > 0).cast("double").alias(HIT_RATE),
        )
    )
    names = [PRECISION, RECALL, MAP, NDCG, HIT_RATE]
    row = scored.agg(*[F.avg(n).alias(n) for n in names]).first()
    assert row is not None  # an aggregate without grouping always yields one row
    return {n: float(row[n]) for n in names}


def hit_rate_and_mrr(recs: DataFrame, relevant: DataFrame, ks: Sequence[int]) -> dict[int, dict[str, float]]:
    """Hit rate and MRR (see the module docstring) at each cut-off of ``ks``, in one Spark job.

    Averaged over the distinct users of ``relevant``; a user without recommendations scores 0.

    Args:
        recs: ``user_id, track_id, rank`` (1-based, unique per user).
        relevant: ``user_id, track_id`` pairs that count as hits.
        ks: Cut-offs, each >= 1.

    Returns:
        ``k -> {HIT_RATE, MRR}``.

    Raises:
        SchemaMismatchError: a column is missing.
        ValueError: ``relevant`` is empty or a cut-off is < 1.
    """
    return _first_hit_metrics(recs, relevant, ks, "relevant")


def _first_hit_metrics(
    recs: DataFrame, relevant: DataFrame, ks: Sequence[int], what: str
) -> dict[int, dict[str, float]]:
    if not ks:
        raise ValueError("at least one cut-off is needed")
    for k in ks:
        _check_k(k)
    require_columns(relevant, (C.USER_ID, C.TRACK_ID), what)
    rel = (
        relevant.select(C.USER_ID, C.TRACK_ID)
        .where(F.col(C.USER_ID).isNotNull() & F.col(C.TRACK_ID).isNotNull())
        .distinct()
    )
    first = (
        _top_k(recs, max(ks)).join(rel, [C.USER_ID, C.TRACK_ID]).groupBy(C.USER_ID).agg(F.min(C.RANK).alias("_rank"))
    )
    columns = []
    for k in ks:
        within = F.col("_rank").isNotNull() & (F.col("_rank") <= k)
        columns += [
            F.avg(F.when(within, 1.0).otherwise(0.0)).alias(f"hit{k}"),
            F.avg(F.when(within, 1.0 / F.col("_rank")).otherwise(0.0)).alias(f"mrr{k}"),
        ]
    row = rel.select(C.USER_ID).distinct().join(first, C.USER_ID, "left").agg(*columns).first()
    if row is None or row[f"hit{ks[0]}"] is None:
        raise ValueError(f"{what} is empty: no (user, track) test pairs to score against")
    return {k: {HIT_RATE: float(row[f"hit{k}"]), MRR: float(row[f"mrr{k}"])} for k in ks}


def next_track_metrics(recs: DataFrame, next_tracks: DataFrame, ks: Sequence[int]) -> dict[int, dict[str, float]]:
    """Next-track hit rate and MRR at each cut-off: :func:`hit_rate_and_mrr` against one track per user.

    Args:
        recs: ``user_id, track_id, rank`` (1-based).
        next_tracks: ``user_id, track_id``, one per user (:func:`spotrec.evaluation.split.first_new_tracks`).
        ks: Cut-offs.

    Returns:
        ``k -> {NEXT_HIT_RATE, NEXT_MRR}`` (their own names, so they sit beside ``hit_rate`` against every
        relevant track in one ``ops.model_metrics`` run).

    Raises:
        ValueError: ``next_tracks`` is empty (no user has a next track) or a cut-off is < 1.
    """
    at = _first_hit_metrics(recs, next_tracks, ks, "next_tracks")
    return {k: {NEXT_HIT_RATE: m[HIT_RATE], NEXT_MRR: m[MRR]} for k, m in at.items()}


def next_track_metrics_arrays(
    ranked: np.ndarray, targets: np.ndarray, ks: Sequence[int] = (10, 50, 100)
) -> dict[str, float]:
    """:func:`hit_rate_and_mrr` on the driver: ranked song ids per query against one target per query.

    The same definition (first-hit rank r; hit@k = [r <= k]; RR = 1 / r within ``max(ks)``), for rankings
    computed in numpy (the Yes.com benchmark's playlist-prefix queries). ``tests/test_evaluation.py`` checks
    that both give the same figures on the same lists.

    Args:
        ranked: (queries, K) song ids, best first (K >= max(ks) for the hit rates to mean what they say);
            ids < 0 mark empty slots.
        targets: (queries,) the true next songs; a target that is not a valid song (e.g. -1) never hits.
        ks: Cut-offs.

    Returns:
        ``hit@<k>`` per k and ``mrr`` (MRR within ``max(ks)``).
    """
    ranked = np.asarray(ranked)
    targets = np.asarray(targets)
    if len(targets) == 0:
        raise ValueError("no queries to evaluate")
    if not ks or min(ks) < 1:
        raise ValueError(f"cut-offs must be >= 1, got {list(ks)}")
    top = ranked[:, : max(ks)]
    hits = (top == targets[:, None]) & (top >= 0)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    out = {f"hit@{k}": float(np.mean((first > 0) & (first <= k))) for k in ks}
    out["mrr"] = float(np.mean(np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)))
    return out


def ranking_metrics_with_mrr(recs: DataFrame, relevant: DataFrame, k: int) -> dict[str, float]:
    """:func:`ranking_metrics` plus ``MRR`` at ``k`` (e.g. served gold.rnn_recommendations vs held-out plays)."""
    metrics = ranking_metrics(recs, relevant, k)
    metrics[MRR] = hit_rate_and_mrr(recs, relevant, [k])[k][MRR]
    return metrics


def catalogue_coverage(recs: DataFrame, n_items: int, k: int) -> float:
    """Share of the catalogue (``n_items`` tracks) that appears in at least one user's top ``k``.

    Raises:
        ValueError: ``n_items`` < 1 or ``k`` < 1.
    """
    if n_items < 1:
        raise ValueError(f"n_items (catalogue size) must be >= 1, got {n_items}")
    distinct = _top_k(recs, k).select(C.TRACK_ID).distinct().count()
    return distinct / n_items


def item_popularity(interactions: DataFrame) -> DataFrame:
    """Per training track: distinct users, share of all training users, and popularity percentile.

    The percentile is ``percent_rank`` over ``n_users`` (tracks strictly less popular / (tracks - 1); 0 for
    the least popular, 1 for the most; 0 for a one-track catalogue). It is computed on the histogram of user
    counts (a few thousand distinct values at most), with a range-partitioned running sum
    (:func:`~spotrec.features.ordinal.global_running_sum`), so no window runs in a single partition.

    Args:
        interactions: Training rows with ``user_id`` and ``track_id``.

    Returns:
        ``track_id, n_users (long), share (double), popularity_percentile (double)``.
    """
    require_columns(interactions, (C.USER_ID, C.TRACK_ID), "interactions")
    pairs = interactions.select(C.USER_ID, C.TRACK_ID).distinct()
    total_users = pairs.agg(F.countDistinct(C.USER_ID).alias("_total"))
    counts = pairs.groupBy(C.TRACK_ID).agg(F.count(F.lit(1)).alias(N_USERS))
    histogram = global_running_sum(
        counts.groupBy(N_USERS).agg(F.count(F.lit(1)).alias("_tracks")), [N_USERS], "_tracks", "_less", total="_all"
    ).select(
        N_USERS,
        F.when(F.col("_all") > 1, F.col("_less") / (F.col("_all") - 1))
        .otherwise(F.lit(0.0))
        .alias(POPULARITY_PERCENTILE),
    )
    return (
        counts.join(F.broadcast(histogram), [N_USERS])
        .crossJoin(F.broadcast(total_users))
        .select(
            C.TRACK_ID,
            F.col(N_USERS).cast("long").alias(N_USERS),
            (F.col(N_USERS) / F.col("_total")).alias(SHARE),
            F.col(POPULARITY_PERCENTILE).cast("double").alias(POPULARITY_PERCENTILE),
        )
    )


def _mean(df: DataFrame, column: str) -> float:
    row = df.agg(F.avg(column).alias("m")).first()
    return float("nan") if row is None or row["m"] is None else float(row["m"])


def novelty(recs: DataFrame, item_popularity: DataFrame, k: int) -> float:
    """Mean self-information ``-log2(share of training users who played the item)`` over recommended items.

    Averaged over every (user, item) in the top ``k``. An item unknown to ``item_popularity`` counts as rare
    as the rarest known item. NaN when there are no recommendations.
    """
    require_columns(item_popularity, (C.TRACK_ID, SHARE), "item_popularity")
    rarest = item_popularity.agg(F.min(SHARE).alias("_min_share"))
    joined = (
        _top_k(recs, k)
        .select(C.TRACK_ID)
        .join(item_popularity.select(C.TRACK_ID, SHARE), [C.TRACK_ID], "left")
        .crossJoin(F.broadcast(rarest))
        .select((-F.log2(F.coalesce(F.col(SHARE), F.col("_min_share")))).alias("_info"))
    )
    return _mean(joined, "_info")


def popularity_bias(recs: DataFrame, item_popularity: DataFrame, k: int) -> float:
    """Mean training popularity percentile (0 = least, 1 = most popular) of the recommended items.

    Averaged over every (user, item) in the top ``k``; items unknown to training count as percentile 0.
    A popularity recommender scores near 1, a long-tail one near 0. NaN when there are no recommendations.
    """
    require_columns(item_popularity, (C.TRACK_ID, POPULARITY_PERCENTILE), "item_popularity")
    joined = (
        _top_k(recs, k)
        .select(C.TRACK_ID)
        .join(item_popularity.select(C.TRACK_ID, POPULARITY_PERCENTILE), [C.TRACK_ID], "left")
        .select(F.coalesce(F.col(POPULARITY_PERCENTILE), F.lit(0.0)).alias("_pct"))
    )
    return _mean(joined, "_pct")


def artist_diversity(recs: DataFrame, tracks: DataFrame, k: int) -> float:
    """Mean over users of (distinct artists in the user's top ``k``) / (length of that list).

    1 means every track is by a different artist. Tracks with no known artist (absent from ``tracks`` or with
    a null ``artist_id``) count as their own artist, so missing metadata never looks like repetition.
    NaN when there are no recommendations.

    Args:
        recs: ``user_id, track_id, rank``.
        tracks: ``silver.tracks``-shaped: ``track_id, artist_id``.
        k: Cut-off.
    """
    require_columns(tracks, (C.TRACK_ID, C.ARTIST_ID), "tracks")
    artists = tracks.groupBy(C.TRACK_ID).agg(F.min(C.ARTIST_ID).alias(C.ARTIST_ID))
    per_user = (
        _top_k(recs, k)
        .select(C.USER_ID, C.TRACK_ID)
        .join(artists, [C.TRACK_ID], "left")
        .withColumn("_artist", F.coalesce(F.col(C.ARTIST_ID), F.concat(F.lit("track:"), F.col(C.TRACK_ID))))
        .groupBy(C.USER_ID)
        .agg((F.countDistinct("_artist") / F.count(F.lit(1))).alias("_diversity"))
    )
    return _mean(per_user, "_diversity")


def metrics_frame(
    spark: SparkSession,
    run_id: str,
    model: str,
    model_version: str | None,
    dataset: str,
    metrics: dict[str, float],
    k: int | None,
) -> DataFrame:
    """Rows for ``ops.model_metrics`` (schema ``MODEL_METRICS``), one per metric, sorted by metric name.

    Write them with ``Storage.append(MODEL_METRICS, frame)``. NaN values are stored as null (no value).
    """
    # Timezone-aware, so PySpark converts it to an instant without consulting the Python process's timezone.
    created_at = dt.datetime.now(dt.UTC)
    rows = [
        (
            run_id,
            model,
            model_version,
            dataset,
            name,
            k,
            None if value is None or math.isnan(value) else float(value),
            created_at,
        )
        for name, value in sorted(metrics.items())
    ]
    return spark.createDataFrame(rows, MODEL_METRICS.schema)
