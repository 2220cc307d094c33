"""Annoy retrieval and executor-side inference: taste vectors and nearest-song recommendations.

The Annoy index, the song-vector matrix and the RNN checkpoint are files. They are shipped to executors with
``SparkContext.addFile`` and opened there with ``SparkFiles.get`` once per partition (``mapInPandas`` gets an
iterator over a whole partition), so the driver never sees per-user data and inference scales with executors.
Annoy memory-maps its index, so every Python worker on a machine shares one copy of it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator

import numpy as np
import pandas as pd
from annoy import AnnoyIndex
from pyspark import SparkFiles
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.columns import DISTANCE, TOKEN, TOKENS, VECTOR
from spotrec.tables import float_vector


def build_annoy_index(vectors: np.ndarray, path: str, metric: str = "angular", n_trees: int = 50, seed: int = 0) -> str:
    """Build and save an Annoy index whose item ``i`` is row ``i`` (the token) of ``vectors``.

    Built single-threaded with a fixed seed, so the same vectors give the same index file.

    Returns:
        ``path``.
    """
    index = AnnoyIndex(vectors.shape[1], metric)  # type: ignore[arg-type]
    index.set_seed(seed)
    for i, v in enumerate(np.asarray(vectors, dtype=np.float32)):
        index.add_item(i, v.tolist())
    index.build(n_trees, n_jobs=1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    index.save(path)
    index.unload()
    return path


def ship_file(spark: SparkSession, path: str) -> str:
    """Send ``path`` to every executor; return the name to pass to ``SparkFiles.get`` there.

    Spark refuses two different paths with the same file name in one application, so the file is first
    copied to ``<tmp>/spotrec-shipped/<content hash>-<name>``: new contents get a new name, the same contents
    the same path (which Spark accepts again).
    """
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    name = f"{digest.hexdigest()[:16]}-{os.path.basename(path)}"
    staging = os.path.join(tempfile.gettempdir(), "spotrec-shipped")
    os.makedirs(staging, exist_ok=True)
    staged = os.path.join(staging, name)
    if not os.path.exists(staged):
        shutil.copyfile(path, staged + ".tmp")
        os.replace(staged + ".tmp", staged)
    spark.sparkContext.addFile(staged)
    return name


def taste_vectors(histories: DataFrame, checkpoint_pt: str, vectors_npy: str, model_version: str) -> DataFrame:
    """Each user's taste vector, computed on executors from their recent token history.

    Args:
        histories: user_id, tokens (array<int>, oldest first; e.g. :func:`~spotrec.features.documents.last_n`).
        checkpoint_pt: the RNN state_dict (its ``.json`` sibling is shipped too).
        vectors_npy: the song-vector matrix (.npy, row = token).
        model_version: written into every row.

    Returns:
        user_id, vector (array<float>), model_version.
    """
    spark = histories.sparkSession
    pt_name = ship_file(spark, checkpoint_pt)
    json_name = ship_file(spark, checkpoint_pt[: -len(".pt")] + ".json")
    vec_name = ship_file(spark, vectors_npy)

    def infer(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import torch

        from spotrec.rnn.taste_rnn import load_checkpoint, predict_taste

        torch.set_num_threads(1)
        model = load_checkpoint(SparkFiles.get(pt_name), SparkFiles.get(json_name))  # once per partition
        vectors = np.load(SparkFiles.get(vec_name), mmap_mode="r")
        for pdf in batches:
            tastes = predict_taste(model, vectors, [np.asarray(t, dtype=np.int64) for t in pdf[TOKENS]])
            yield pd.DataFrame({C.USER_ID: pdf[C.USER_ID].to_numpy(), VECTOR: list(tastes)})

    schema = f"{C.USER_ID} string, {VECTOR} array<float>"
    return (
        histories.select(C.USER_ID, TOKENS)
        .mapInPandas(infer, schema)
        .select(C.USER_ID, float_vector(VECTOR).alias(VECTOR), F.lit(model_version).alias(C.MODEL_VERSION))
    )


def exclusion_tokens(recent: DataFrame, vocabulary: DataFrame) -> DataFrame:
    """Per user, the token numbers of tracks they must not be recommended (e.g. recently played).

    Args:
        recent: user_id, track_id pairs.
        vocabulary: track_id, token.

    Returns:
        user_id, tokens (array<int>, sorted).
    """
    return (
        recent.join(vocabulary.select(C.TRACK_ID, TOKEN), C.TRACK_ID)
        .groupBy(C.USER_ID)
        .agg(F.array_sort(F.collect_set(TOKEN)).alias(TOKENS))
    )


def query_index(
    index: AnnoyIndex, vector: np.ndarray, k: int, search_k: int, exclude: set[int]
) -> tuple[list[int], list[float]]:
    """The ``k`` nearest items to ``vector`` that are not in ``exclude`` (asks for more when some are).

    A fixed ``search_k`` caps how many candidates Annoy inspects, so a user with many excluded tracks would
    get a short list; the budget grows to Annoy's own default for the request (``n_trees * want``) then.
    """
    n = index.get_n_items()
    want = min(n, k + len(exclude))
    while True:
        budget = search_k if search_k < 0 else max(search_k, index.get_n_trees() * want)
        items, distances = index.get_nns_by_vector(vector.tolist(), want, search_k=budget, include_distances=True)
        kept = [(i, d) for i, d in zip(items, distances) if i not in exclude]
        if len(kept) >= k or want >= n or len(items) < want:
            kept = kept[:k]
            return [i for i, _ in kept], [d for _, d in kept]
        want = min(n, want * 2)


def recommend(
    tastes: DataFrame,
    exclusions: DataFrame | None,
    vocabulary: DataFrame,
    index_path: str,
    vector_size: int,
    metric: str,
    top_k: int,
    search_k: int,
    model_version: str,
) -> DataFrame:
    """Nearest songs to each user's taste vector, queried on executors from the shipped Annoy index.

    Args:
        tastes: user_id, vector.
        exclusions: user_id, tokens (array<int>) never to recommend to that user (see :func:`exclusion_tokens`),
            or ``None``.
        vocabulary: track_id, token (maps Annoy items back to track ids).
        index_path: the saved Annoy index (item = token).
        vector_size: dimension the index was built with.
        metric: the index's metric.
        top_k: recommendations per user.
        search_k: Annoy ``search_k`` (-1: Annoy's default).
        model_version: written into every row.

    Returns:
        user_id, rank (1-based int), track_id, distance (double), model_version.
    """
    name = ship_file(tastes.sparkSession, index_path)
    if exclusions is None:
        joined = tastes.select(C.USER_ID, VECTOR, F.lit(None).cast("array<int>").alias(TOKENS))
    else:
        joined = tastes.select(C.USER_ID, VECTOR).join(exclusions.select(C.USER_ID, TOKENS), C.USER_ID, "left")

    def query(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # Imported here: cloudpickle cannot ship the C extension's class object by value.
        from annoy import AnnoyIndex

        index = AnnoyIndex(vector_size, metric)  # type: ignore[arg-type]
        index.load(SparkFiles.get(name))  # once per partition; memory-mapped
        for pdf in batches:
            users, ranks, tokens, distances = [], [], [], []
            for user, vec, excl in zip(pdf[C.USER_ID], pdf[VECTOR], pdf[TOKENS]):
                exclude = set() if excl is None else {int(t) for t in excl}
                items, dist = query_index(index, np.asarray(vec, dtype=np.float32), top_k, search_k, exclude)
                users += [user] * len(items)
                ranks += list(range(1, len(items) + 1))
                tokens += items
                distances += dist
            yield pd.DataFrame(
                {
                    C.USER_ID: pd.Series(users, dtype=object),
                    C.RANK: pd.Series(ranks, dtype="int32"),
                    TOKEN: pd.Series(tokens, dtype="int32"),
                    DISTANCE: pd.Series(distances, dtype="float64"),
                }
            )
        index.unload()

    schema = f"{C.USER_ID} string, {C.RANK} int, {TOKEN} int, {DISTANCE} double"
    hits = joined.mapInPandas(query, schema)
    return hits.join(vocabulary.select(C.TRACK_ID, TOKEN), TOKEN).select(
        C.USER_ID, C.RANK, C.TRACK_ID, DISTANCE, F.lit(model_version).alias(C.MODEL_VERSION)
    )


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int, metric: str = "angular") -> np.ndarray:
    """Exact top-``k`` item ids per query by brute force (one BLAS matrix product): the ground truth for Annoy.

    ``angular`` ranks by cosine, ``euclidean`` by distance, ``dot`` by inner product.
    """
    if metric == "angular":
        items = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        scores = q @ items.T
    elif metric == "euclidean":
        scores = -((queries**2).sum(1, keepdims=True) - 2 * queries @ vectors.T + (vectors**2).sum(1)[None, :])
    elif metric == "dot":
        scores = queries @ vectors.T
    else:
        raise ValueError(f"exact search supports angular, euclidean and dot, not {metric!r}")
    k = min(k, vectors.shape[0])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)
