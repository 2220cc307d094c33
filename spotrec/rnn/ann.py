"""Annoy / Voyager retrieval and executor-side inference: taste vectors and nearest-song recommendations.

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


VOYAGER_METRICS = ("angular", "dot")
"""Annoy metric names that Voyager serves: ``angular`` is its ``Cosine`` space, ``dot`` its ``InnerProduct``."""


def build_voyager_index(
    vectors: np.ndarray, path: str, metric: str = "angular", m: int = 16, ef_construction: int = 200, seed: int = 0
) -> str:
    """Build and save a Voyager (HNSW) index whose item ``i`` is row ``i`` (the token) of ``vectors``.

    Voyager is Spotify's successor to Annoy: a graph index (hierarchical navigable small worlds) with a
    per-query search budget ``ef``. Its distances are ``1 - cosine`` (angular) and ``1 - dot`` (dot).
    """
    from voyager import Index, Space

    if metric not in VOYAGER_METRICS:
        raise ValueError(f"voyager supports the metrics {VOYAGER_METRICS}, not {metric!r}")
    space = Space.Cosine if metric == "angular" else Space.InnerProduct
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = Index(space, num_dimensions=int(vectors.shape[1]), M=m, ef_construction=ef_construction, random_seed=seed)
    index.add_items(vectors, ids=np.arange(len(vectors)), num_threads=1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    index.save(path)
    return path


def build_index(
    vectors: np.ndarray,
    path: str,
    metric: str,
    n_trees: int,
    seed: int = 0,
    backend: str = "annoy",
    *,
    voyager_m: int = 16,
    voyager_ef_construction: int = 200,
) -> str:
    """The configured backend's index (``rnn.ann_backend``); a Voyager index gets the suffix ``.voy``."""
    if backend == "voyager":
        return build_voyager_index(
            vectors,
            os.path.splitext(path)[0] + ".voy",
            metric,
            m=voyager_m,
            ef_construction=voyager_ef_construction,
            seed=seed,
        )
    if backend != "annoy":
        raise ValueError(f"unknown ann backend {backend!r}: annoy or voyager")
    return build_annoy_index(vectors, path, metric, n_trees, seed)


class VoyagerSearcher:
    """A loaded Voyager index with Annoy's query interface (``get_nns_by_vector``), so :func:`query_index`
    and :func:`recommend` serve either backend; ``search_k`` is Voyager's query ``ef`` (at least ``n``)."""

    def __init__(self, path: str) -> None:
        from voyager import Index

        self.index = Index.load(path)

    def get_n_items(self) -> int:
        return len(self.index)

    def get_n_trees(self) -> int:
        return 1

    def get_nns_by_vector(
        self, vector: list[float], n: int, search_k: int = -1, include_distances: bool = True
    ) -> tuple[list[int], list[float]]:
        n = min(n, len(self.index))
        if n == 0:
            return [], []
        ids, distances = self.index.query(np.asarray(vector, dtype=np.float32), k=n, query_ef=max(search_k, n))
        return [int(i) for i in ids], [float(d) for d in distances]

    def unload(self) -> None:
        del self.index


def open_index(path: str, dimension: int, metric: str) -> AnnoyIndex | VoyagerSearcher:
    """Load a saved index of either backend (Voyager when the file ends in ``.voy``)."""
    if path.endswith(".voy"):
        return VoyagerSearcher(path)
    index = AnnoyIndex(dimension, metric)  # type: ignore[arg-type]
    index.load(path)  # memory-mapped
    return index


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
    key = (spark.sparkContext.applicationId, staged)
    if key not in _SHIPPED:  # Spark warns "has been added already" on a second addFile of one path
        spark.sparkContext.addFile(staged)
        _SHIPPED.add(key)
    return name


_SHIPPED: set[tuple[str, str]] = set()
"""(application id, staged path) already sent with ``addFile``: each file is shipped once per application."""


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
    index: AnnoyIndex | VoyagerSearcher, vector: np.ndarray, k: int, search_k: int, exclude: set[int]
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
        index_path: the saved index (item = token): Annoy, or Voyager when it ends in ``.voy``.
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
        from spotrec.rnn.ann import open_index  # by reference: cloudpickle cannot ship the C extensions

        index = open_index(SparkFiles.get(name), vector_size, metric)  # once per partition
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
