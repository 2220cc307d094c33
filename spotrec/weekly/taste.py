"""Taste clusters: k-means over normalised ALS track factors, and each user's listening share per cluster.

Track factors are L2-normalised first so clusters group tracks by direction in taste space (what cosine
similarity and the dot-product ranking care about) rather than by factor length, which mostly tracks
popularity. The agreement with a known ground truth (the synthetic world's taste groups) is measured with
the adjusted Rand index and purity (:func:`cluster_purity_vs_truth`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml.clustering import KMeans
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spotrec import columns as C

CLUSTER = C.CLUSTER
SHARE = C.SHARE
DISTANCE = "distance"


def normalised_features(track_factors: DataFrame) -> DataFrame:
    """``track_factors`` with ``features`` scaled to unit L2 norm (zero vectors stay zero)."""
    norm = F.sqrt(F.aggregate(F.col(C.FEATURES), F.lit(0.0), lambda acc, x: acc + x.cast("double") * x))
    safe = F.when(norm > 0, norm).otherwise(F.lit(1.0))
    return track_factors.withColumn(C.FEATURES, F.transform(F.col(C.FEATURES), lambda x: x.cast("double") / safe))


def taste_clusters(track_factors: DataFrame, k: int, *, seed: int, max_iter: int = 30) -> DataFrame:
    """Seeded k-means of the normalised track factors.

    Args:
        track_factors: gold.track_factors (track_id, features, model_version).
        k: number of clusters.
        seed: k-means|| initialisation seed (same seed, same input -> same clusters).
        max_iter: Lloyd iterations.

    Returns:
        gold.taste_clusters columns: track_id, cluster, distance (Euclidean, normalised vector to its
        centre), model_version.
    """
    points = normalised_features(track_factors.select(C.TRACK_ID, C.FEATURES, C.MODEL_VERSION)).withColumn(
        "_vec", array_to_vector(F.col(C.FEATURES))
    )
    # A fixed layout (hash partitions by track, sorted within) makes k-means|| sample the same rows every run.
    points = points.repartition(C.TRACK_ID).sortWithinPartitions(C.TRACK_ID).cache()
    try:
        model = KMeans(
            k=k, seed=seed, maxIter=max_iter, featuresCol="_vec", predictionCol=CLUSTER, distanceMeasure="euclidean"
        ).fit(points)
        centres = [[float(x) for x in c] for c in model.clusterCenters()]
        centre_col = F.array(*[F.array(*[F.lit(x) for x in c]) for c in centres])
        centre = F.element_at(centre_col, F.col(CLUSTER) + 1)
        sq = F.zip_with(F.col(C.FEATURES), centre, lambda a, b: (a - b) * (a - b))
        distance = F.sqrt(F.aggregate(sq, F.lit(0.0), lambda acc, x: acc + x))
        return model.transform(points).select(
            C.TRACK_ID,
            F.col(CLUSTER).cast("int").alias(CLUSTER),
            distance.alias(DISTANCE),
            C.MODEL_VERSION,
        )
    finally:
        # The cache served the k-means iterations; the returned (lazy) frame recomputes the cheap normalisation.
        points.unpersist()


def user_taste_profile(interactions: DataFrame, clusters: DataFrame) -> DataFrame:
    """Each user's share of positive confidence per taste cluster; a user's shares sum to 1.

    Negative confidence (mostly-skipped tracks) is not taste, so it counts as 0; users with no positive
    confidence on a clustered track get no rows.

    Args:
        interactions: gold.interactions (user_id, track_id, confidence).
        clusters: gold.taste_clusters (track_id, cluster, model_version).

    Returns:
        gold.user_taste_profile columns: user_id, cluster, share, model_version.
    """
    weights = interactions.select(
        C.USER_ID, C.TRACK_ID, F.greatest(F.col(C.CONFIDENCE).cast("double"), F.lit(0.0)).alias("_w")
    ).where(F.col("_w") > 0)
    per_cluster = (
        weights.join(clusters.select(C.TRACK_ID, CLUSTER, C.MODEL_VERSION), C.TRACK_ID)
        .groupBy(C.USER_ID, CLUSTER, C.MODEL_VERSION)
        .agg(F.sum("_w").alias("_s"))
    )
    total = F.sum("_s").over(Window.partitionBy(C.USER_ID))
    return per_cluster.select(
        C.USER_ID, F.col(CLUSTER).cast("int").alias(CLUSTER), (F.col("_s") / total).alias(SHARE), C.MODEL_VERSION
    )


def _comb2(x: np.ndarray | float) -> Any:
    return np.asarray(x, dtype=np.float64) * (np.asarray(x, dtype=np.float64) - 1.0) / 2.0


def adjusted_rand_index(labels_true: Any, labels_pred: Any) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) of two labelings of the same items.

    1.0 for identical partitions (up to renaming), about 0.0 for random ones, negative for worse than
    random. Two one-cluster labelings count as identical (1.0).
    """
    t = np.asarray(labels_true)
    p = np.asarray(labels_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"label arrays must be 1-D and equally long, got {t.shape} and {p.shape}")
    n = len(t)
    if n < 2:
        return 1.0
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    table = np.zeros((ti.max() + 1, pi.max() + 1), dtype=np.int64)
    np.add.at(table, (ti, pi), 1)
    index = float(_comb2(table).sum())
    a = float(_comb2(table.sum(axis=1)).sum())
    b = float(_comb2(table.sum(axis=0)).sum())
    expected = a * b / float(_comb2(n))
    best = (a + b) / 2.0
    if best == expected:
        return 1.0
    return (index - expected) / (best - expected)


def purity(labels_true: Any, labels_pred: Any) -> float:
    """Share of items whose cluster's majority true label is their own label."""
    t = np.asarray(labels_true)
    p = np.asarray(labels_pred)
    if len(t) == 0:
        raise ValueError("purity of an empty labeling")
    frame = pd.DataFrame({"t": t, "p": p})
    return float(frame.groupby("p")["t"].agg(lambda s: s.value_counts().iloc[0]).sum() / len(t))


def purity_chance(clusters: pd.DataFrame, truth: pd.DataFrame, *, truth_col: str = "taste_group") -> float:
    """Purity of guessing: the largest true group's share among the clustered tracks (what purity beats)."""
    present = truth[truth[C.TRACK_ID].isin(clusters[C.TRACK_ID])]
    return float(present[truth_col].value_counts(normalize=True).max())


def cluster_purity_vs_truth(
    clusters: DataFrame | pd.DataFrame,
    truth: DataFrame | pd.DataFrame,
    *,
    truth_col: str = "taste_group",
) -> dict[str, float]:
    """How well taste clusters recover known taste groups (e.g. the synthetic world's ground truth).

    Both sides are one small row per track, so they are collected.

    Args:
        clusters: track_id, cluster (gold.taste_clusters).
        truth: track_id and ``truth_col``.
        truth_col: the true group column.

    Returns:
        ``{"tracks", "clusters", "groups", "purity", "ari"}`` over the tracks present in both.
    """
    c = clusters.toPandas() if isinstance(clusters, DataFrame) else clusters
    t = truth.toPandas() if isinstance(truth, DataFrame) else truth
    both = c[[C.TRACK_ID, CLUSTER]].merge(t[[C.TRACK_ID, truth_col]], on=C.TRACK_ID)
    if both.empty:
        raise ValueError("no track is in both the clusters and the truth")
    return {
        "tracks": float(len(both)),
        "clusters": float(both[CLUSTER].nunique()),
        "groups": float(both[truth_col].nunique()),
        "purity": purity(both[truth_col], both[CLUSTER]),
        "ari": adjusted_rand_index(both[truth_col].to_numpy(), both[CLUSTER].to_numpy()),
    }
