"""Song vectors with Spark MLlib ``Word2Vec`` (skip-gram + hierarchical softmax), and shared helpers.

MLlib's Word2Vec is the distributed baseline: it trains on executors straight from the documents frame.
The paper's own variant (CBOW + negative sampling) lives in :mod:`spotrec.rnn.cbow`; both return the
same ``track_id, method, vector, model_version`` frame (gold.track_embeddings).
"""

from __future__ import annotations

import logging

import numpy as np
from pyspark.ml.feature import Word2Vec
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.columns import METHOD, TOKEN, TRACKS, VECTOR
from spotrec.config import RnnConfig
from spotrec.spark import local_frame
from spotrec.tables import float_vector

log = logging.getLogger(__name__)

SG_HS = "sg_hs"
"""Method name of MLlib skip-gram + hierarchical softmax vectors."""
CBOW_NS = "cbow_ns"
"""Method name of torch CBOW + negative sampling vectors."""


def train_mllib_word2vec(documents: DataFrame, cfg: RnnConfig, model_version: str) -> DataFrame:
    """Train MLlib Word2Vec on ``documents.tracks`` and return one vector per track.

    The documents should already be restricted to the vocabulary (``encode_documents``); ``min_count``
    still applies as MLlib's own cut. MLlib has no subsampling and no negative sampling: it is the
    skip-gram + hierarchical-softmax model of the original C tool.

    Args:
        documents: a frame with ``tracks`` (array<string>) per playlist or session.
        cfg: vector_size, window, w2v_epochs, w2v_lr, min_count, w2v_partitions and seed are used.
        model_version: written into every row.

    Returns:
        track_id, method (``sg_hs``), vector (array<float>), model_version.
    """
    w2v = Word2Vec(
        vectorSize=cfg.vector_size,
        minCount=cfg.min_count,
        numPartitions=cfg.w2v_partitions,
        stepSize=cfg.w2v_lr * 2.5,
        maxIter=cfg.w2v_epochs,
        seed=cfg.seed,
        windowSize=cfg.window,
        inputCol=TRACKS,
        outputCol="_doc_vector",
    )
    model = w2v.fit(documents.select(TRACKS))
    log.info("mllib word2vec: trained %d epochs, vector_size=%d", cfg.w2v_epochs, cfg.vector_size)
    return model.getVectors().select(
        F.col("word").alias(C.TRACK_ID),
        F.lit(SG_HS).alias(METHOD),
        float_vector(vector_to_array(F.col("vector"), "float32")).alias(VECTOR),
        F.lit(model_version).alias(C.MODEL_VERSION),
    )


def embeddings_frame(
    spark: SparkSession, track_ids: list[str], vectors: np.ndarray, method: str, model_version: str
) -> DataFrame:
    """A gold.track_embeddings frame from a driver-side matrix (row i is ``track_ids[i]``).

    Used by the torch trainer, whose vectors live on the driver after training.
    """
    if len(track_ids) != vectors.shape[0]:
        raise ValueError(f"{len(track_ids)} track ids for {vectors.shape[0]} vectors")
    rows = [(t, method, [float(x) for x in v], model_version) for t, v in zip(track_ids, vectors)]
    schema = f"{C.TRACK_ID} string, {METHOD} string, {VECTOR} array<float>, {C.MODEL_VERSION} string"
    return local_frame(spark, rows, schema).withColumn(VECTOR, float_vector(VECTOR))


def vector_matrix(embeddings: DataFrame, vocabulary: DataFrame, vector_size: int) -> np.ndarray:
    """The song vectors as a float32 matrix whose row ``token`` is that token's vector.

    The matrix is what the RNN trains against and what Annoy indexes, both single-machine by nature
    (vocabulary x vector_size floats). Tokens without a vector (dropped by MLlib's ``minCount``) get a
    zero row, which Annoy never returns first and which the RNN never sees as a target.

    Args:
        embeddings: track_id, vector.
        vocabulary: track_id, token.
        vector_size: columns of the matrix.
    """
    rows = vocabulary.join(embeddings.select(C.TRACK_ID, VECTOR), C.TRACK_ID, "left").select(TOKEN, VECTOR).collect()
    n = (max(r[TOKEN] for r in rows) + 1) if rows else 0
    out = np.zeros((n, vector_size), dtype=np.float32)
    for r in rows:
        if r[VECTOR] is not None:
            out[r[TOKEN]] = np.asarray(r[VECTOR], dtype=np.float32)
    return out
