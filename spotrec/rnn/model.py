"""The RNN system's model: song vectors (word2vec) -> taste RNN -> Annoy index, fitted from event frames.

:func:`fit_rnn` learns the vocabulary, song vectors and RNN from the events it is given; the ``rnn``
step (:mod:`spotrec.steps.rnn`) serves a model: it writes gold.track_embeddings (the chosen method's rows replaced),
gold.user_taste_vectors and gold.rnn_recommendations. Model files live under
``<artifacts_dir>/rnn/<model_version>/``: vocabulary, song vectors (.npy), RNN checkpoint (.pt + .json)
and the Annoy index. Spark does every per-user and per-document step; only the training loops and the index
build, single-machine by nature, run on the driver (or through TorchDistributor).

Serving decision: the pipeline first fits on the training weeks and scores the last week
(:func:`spotrec.rnn.week_eval.evaluate_last_week`), then serves *that* model, with every user's history read from all
events (the last week included) and recently played tracks excluded. The served model is then exactly the
measured one and the demo trains once; the price is that songs first played in the last week have no vector
yet. ``rnn.refit_for_serving`` refits on all events instead (one more training run).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.columns import DOC_ID, DOC_KIND, INPUT_TOKENS, TARGET_TOKEN, TOKEN, TOKENS, VECTOR
from spotrec.config import RnnConfig
from spotrec.errors import SpotrecError
from spotrec.features.documents import (
    build_vocabulary,
    encode_documents,
    last_n,
    play_sequences,
    playlist_documents,
    rnn_windows,
    session_documents,
    validation_split,
    write_parquet,
)
from spotrec.rnn.ann import build_index
from spotrec.rnn.cbow import train_cbow
from spotrec.rnn.taste_rnn import load_checkpoint, retrieval_space
from spotrec.rnn.training import run_training
from spotrec.rnn.word2vec import CBOW_NS, embeddings_frame, train_mllib_word2vec, vector_matrix

log = logging.getLogger(__name__)


@dataclass
class RnnServing:
    """What a run of the ``rnn`` step produced."""

    model_version: str
    artifacts: str
    vocabulary_size: int
    train_windows: int
    checkpoint: str
    index_path: str
    vectors_path: str


def default_model_version(cfg: RnnConfig) -> str:
    """``w2v-rnn-<UTC time>-<config hash>``: sortable, and different configs never share a name."""
    digest = hashlib.sha1(json.dumps(cfg.model_dump(), sort_keys=True).encode()).hexdigest()[:8]
    return f"w2v-rnn-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S')}-{digest}"


def documents_for(events: DataFrame, playlists: DataFrame | None, cfg: RnnConfig) -> DataFrame:
    """Sessions and/or playlists as documents (doc_id, doc_kind, tracks), per the config."""
    parts = []
    if cfg.use_sessions:
        parts.append(session_documents(events))
    if cfg.use_playlists and playlists is not None:
        parts.append(playlist_documents(playlists))
    if not parts:
        raise SpotrecError("rnn: no documents (use_sessions and use_playlists are both off, or no playlists)")
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


@dataclass
class RnnModel:
    """A fitted RNN-system model: the files under its artifacts folder and the facts needed to serve it."""

    model_version: str
    artifacts: str
    vocabulary_path: str
    """Parquet (track_id, token, count): token = row of the song vectors = Annoy item."""
    vectors: np.ndarray
    vectors_path: str
    checkpoint: str
    vocabulary_size: int
    train_windows: int
    embeddings: DataFrame
    """gold.track_embeddings rows of this model (method = ``cfg.method``)."""

    def vocabulary(self, spark: SparkSession) -> DataFrame:
        """The frozen vocabulary (track_id, token, count)."""
        return spark.read.parquet(self.vocabulary_path)


def fit_rnn(
    spark: SparkSession,
    events: DataFrame,
    playlists: DataFrame | None,
    cfg: RnnConfig,
    out: str,
    version: str,
) -> RnnModel:
    """Learn song vectors from documents and the taste RNN from play sequences, on ``events`` only.

    The evaluation calls this on the training weeks of a time split, so nothing of the test week reaches the
    vocabulary, the song vectors or the RNN.

    Args:
        spark: the session (Parquet I/O of the training batches).
        events: silver.listen_events rows to learn from (event_id, user_id, track_id, ts, session_id,
            session_position).
        playlists: silver.playlists, or ``None``.
        cfg: the ``rnn`` configuration section.
        out: the model's artifacts folder.
        version: the model version (names files and rows).

    Raises:
        SpotrecError: no vocabulary, or no training windows (too few plays per user for ``sequence_length``).
    """
    os.makedirs(out, exist_ok=True)
    documents = documents_for(events, playlists, cfg)

    # Freeze the vocabulary in Parquet: every later join sees the same numbering, and it is a model artifact.
    vocab_path = os.path.join(out, "vocabulary")
    write_parquet(build_vocabulary(documents, cfg.top_n_tracks, cfg.min_count), vocab_path, files=1)
    vocab = spark.read.parquet(vocab_path)
    counts_rows = vocab.orderBy(TOKEN).select(C.TRACK_ID, "count").collect()
    counts = np.array([r["count"] for r in counts_rows], dtype=np.float64)
    track_ids = [r[C.TRACK_ID] for r in counts_rows]
    if len(track_ids) == 0:
        raise SpotrecError("rnn: the vocabulary is empty; ingest listening events first")
    encoded = encode_documents(documents, vocab, [DOC_ID, DOC_KIND], cfg.min_document_length)

    # Song vectors.
    if cfg.method == CBOW_NS:
        docs_path = os.path.join(out, "documents")
        write_parquet(encoded.select(TOKENS), docs_path, files=max(1, spark.sparkContext.defaultParallelism))
        vectors = train_cbow(docs_path, counts, cfg).vectors
        embeddings = embeddings_frame(spark, track_ids, vectors, CBOW_NS, version)
    else:
        embeddings = train_mllib_word2vec(encoded, cfg, version)
        vectors = vector_matrix(embeddings, vocab, cfg.vector_size)
    vectors_path = os.path.join(out, f"{version}-vectors.npy")
    np.save(vectors_path, vectors)

    # Taste RNN on windows of each user's play sequence.
    sequences = encode_documents(play_sequences(events), vocab, [C.USER_ID], 1)
    windows = training_windows(sequences, cfg).select(C.USER_ID, INPUT_TOKENS, TARGET_TOKEN)
    train, val = validation_split(windows, cfg.validation_fraction, cfg.seed)
    train_path, val_path = os.path.join(out, "windows_train"), os.path.join(out, "windows_val")
    write_parquet(train.drop(C.USER_ID), train_path, files=max(1, spark.sparkContext.defaultParallelism))
    n_train = spark.read.parquet(train_path).count()
    if n_train == 0:
        raise SpotrecError(
            "rnn: no training windows: no user played two or more vocabulary tracks (with "
            f"window_targets={cfg.window_targets!r}, two different ones); ingest more events"
        )
    write_parquet(val.drop(C.USER_ID), val_path, files=1)
    has_val = spark.read.parquet(val_path).limit(1).count() > 0
    checkpoint = run_training(train_path, val_path if has_val else None, vectors_path, cfg, out, version)
    log.info("rnn %s: %d songs, %d training windows, artifacts in %s", version, len(track_ids), n_train, out)
    return RnnModel(version, out, vocab_path, vectors, vectors_path, checkpoint, len(track_ids), n_train, embeddings)


@dataclass(frozen=True)
class SongIndex:
    """A saved Annoy index and how to open it."""

    path: str
    dimension: int
    metric: str


def rnn_index(model: RnnModel, cfg: RnnConfig) -> SongIndex:
    """Build (once per model) the Annoy index the taste vectors are searched in.

    ``l2`` / ``cosine`` models search the song vectors with ``cfg.annoy_metric``; a ``softmax`` model searches
    ``[vector, bias]`` by inner product (see :func:`spotrec.rnn.taste_rnn.retrieval_space`).
    """
    items, metric = retrieval_space(load_checkpoint(model.checkpoint), model.vectors)
    metric = metric or cfg.annoy_metric
    path = index_path(model, cfg, metric)
    if not os.path.exists(path):
        build_cfg_index(items, path, metric, cfg)
    return SongIndex(path, items.shape[1], metric)


def index_path(model: RnnModel, cfg: RnnConfig, metric: str) -> str:
    """Where the model's index for ``metric`` lives (one per model version, whose hash covers ``cfg``)."""
    suffix = ".voy" if cfg.ann_backend == "voyager" else ".ann"
    return os.path.join(model.artifacts, f"{model.model_version}-songs-{metric}{suffix}")


def build_cfg_index(items: np.ndarray, path: str, metric: str, cfg: RnnConfig) -> str:
    """Build the ``rnn`` section's index (backend, trees, Voyager graph settings, seed) of ``items`` at ``path``."""
    return build_index(
        items,
        path,
        metric,
        cfg.n_trees,
        cfg.seed,
        cfg.ann_backend,
        voyager_m=cfg.voyager_m,
        voyager_ef_construction=cfg.voyager_ef_construction,
    )


def rnn_queries(tastes: DataFrame, cfg: RnnConfig) -> DataFrame:
    """Taste vectors (user_id, vector, ...) as queries of :func:`rnn_index`: ``[taste, 1]`` for ``softmax``."""
    if cfg.rnn_loss != "softmax":
        return tastes
    return tastes.withColumn(VECTOR, F.concat(F.col(VECTOR), F.array(F.lit(1.0).cast("float"))))


def training_windows(sequences: DataFrame, cfg: RnnConfig) -> DataFrame:
    """The RNN's (inputs, target) windows of each user's encoded play sequence, per ``cfg.window_targets``."""
    return rnn_windows(
        sequences, cfg.sequence_length, cfg.window_stride, min_inputs=1, new_targets=cfg.window_targets == "new"
    )


def user_histories(events: DataFrame, vocab: DataFrame, cfg: RnnConfig) -> DataFrame:
    """Each user's last ``sequence_length`` vocabulary plays (user_id, tracks, tokens): the RNN's input."""
    return last_n(encode_documents(play_sequences(events), vocab, [C.USER_ID], 1), cfg.sequence_length)
