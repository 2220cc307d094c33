"""The discovery step: silver events and playlists -> song vectors -> taste RNN -> Annoy recommendations.

Reads silver.listen_events (and silver.playlists when present), writes gold.track_embeddings (the chosen
method's rows replaced), gold.user_taste_vectors and gold.rnn_recommendations, and keeps the model files under
``<artifacts_dir>/discovery/<model_version>/``: vocabulary, song vectors (.npy), RNN checkpoint (.pt + .json)
and the Annoy index. Spark does every per-user and per-document step; only the training loops and the index
build, single-machine by nature, run on the driver (or through TorchDistributor).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.discovery.ann import build_annoy_index, exclusion_tokens, recommend, taste_vectors
from spotrec.discovery.cbow import train_cbow
from spotrec.discovery.config import DiscoveryConfig
from spotrec.discovery.rnn import run_training
from spotrec.discovery.tables import (
    DOC_ID,
    DOC_KIND,
    INPUT_TOKENS,
    METHOD,
    RNN_RECOMMENDATIONS,
    TARGET_TOKEN,
    TOKEN,
    TOKENS,
    TRACK_EMBEDDINGS,
    USER_TASTE_VECTORS,
)
from spotrec.discovery.word2vec import CBOW_NS, embeddings_frame, train_mllib_word2vec, vector_matrix
from spotrec.errors import SpotrecError
from spotrec.features.documents import (
    build_vocabulary,
    encode_documents,
    last_n,
    play_sequences,
    playlist_documents,
    recent_tracks,
    rnn_windows,
    session_documents,
    validation_split,
    write_parquet,
)
from spotrec.tables import PLAYLISTS, SILVER_EVENTS, Storage

log = logging.getLogger(__name__)


@dataclass
class DiscoveryRun:
    """What a discovery run produced."""

    model_version: str
    artifacts: str
    vocabulary_size: int
    train_windows: int
    checkpoint: str
    index_path: str
    vectors_path: str


def default_model_version(cfg: DiscoveryConfig) -> str:
    """``w2v-rnn-<UTC time>-<config hash>``: sortable, and different configs never share a name."""
    digest = hashlib.sha1(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:8]
    return f"w2v-rnn-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S')}-{digest}"


def documents_for(events: DataFrame, playlists: DataFrame | None, cfg: DiscoveryConfig) -> DataFrame:
    """Sessions and/or playlists as documents (doc_id, doc_kind, tracks), per the config."""
    parts = []
    if cfg.use_sessions:
        parts.append(session_documents(events))
    if cfg.use_playlists and playlists is not None:
        parts.append(playlist_documents(playlists))
    if not parts:
        raise SpotrecError("discovery: no documents (use_sessions and use_playlists are both off, or no playlists)")
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def run_discovery(
    spark: SparkSession,
    storage: Storage,
    cfg: DiscoveryConfig,
    artifacts_dir: str,
    model_version: str | None = None,
) -> DiscoveryRun:
    """Train song vectors and the taste RNN, then write taste vectors and recommendations for every user.

    Args:
        spark: the session (used for Parquet I/O of the training batches).
        storage: where silver inputs are read and gold outputs written.
        cfg: the discovery configuration.
        artifacts_dir: root folder for model files.
        model_version: names this run's rows and files (default: :func:`default_model_version`).

    Raises:
        SpotrecError: the data gives no training windows (too few plays per user for ``sequence_length``).
    """
    cfg.validate()
    version = model_version or default_model_version(cfg)
    out = os.path.join(artifacts_dir, "discovery", version)
    os.makedirs(out, exist_ok=True)
    events = storage.read(SILVER_EVENTS).select(
        C.EVENT_ID, C.USER_ID, C.TRACK_ID, C.TS, C.SESSION_ID, C.SESSION_POSITION
    )
    playlists = storage.read(PLAYLISTS) if cfg.use_playlists and storage.exists(PLAYLISTS) else None
    documents = documents_for(events, playlists, cfg)

    # Freeze the vocabulary in Parquet: every later join sees the same numbering, and it is a model artifact.
    vocab_path = os.path.join(out, "vocabulary")
    write_parquet(build_vocabulary(documents, cfg.top_n_tracks, cfg.min_count), vocab_path, files=1)
    vocab = spark.read.parquet(vocab_path)
    counts_rows = vocab.orderBy(TOKEN).select(C.TRACK_ID, "count").collect()
    counts = np.array([r["count"] for r in counts_rows], dtype=np.float64)
    track_ids = [r[C.TRACK_ID] for r in counts_rows]
    if len(track_ids) == 0:
        raise SpotrecError("discovery: the vocabulary is empty; ingest listening events first")
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
    storage.replace_where(TRACK_EMBEDDINGS, embeddings, f"{METHOD} = '{cfg.method}'")
    vectors_path = os.path.join(out, f"{version}-vectors.npy")
    np.save(vectors_path, vectors)

    # Taste RNN on fixed windows of each user's play sequence.
    sequences = encode_documents(play_sequences(events), vocab, [C.USER_ID], 1)
    windows = rnn_windows(sequences, cfg.sequence_length, cfg.window_stride).select(
        C.USER_ID, INPUT_TOKENS, TARGET_TOKEN
    )
    train, val = validation_split(windows, cfg.validation_fraction, cfg.seed)
    train_path, val_path = os.path.join(out, "windows_train"), os.path.join(out, "windows_val")
    write_parquet(train.drop(C.USER_ID), train_path, files=max(1, spark.sparkContext.defaultParallelism))
    n_train = spark.read.parquet(train_path).count()
    if n_train == 0:
        raise SpotrecError(
            f"discovery: no training windows: no user has more than sequence_length={cfg.sequence_length} plays "
            "of vocabulary tracks; lower discovery.sequence_length or ingest more events"
        )
    write_parquet(val.drop(C.USER_ID), val_path, files=1)
    has_val = spark.read.parquet(val_path).limit(1).count() > 0
    checkpoint = run_training(train_path, val_path if has_val else None, vectors_path, cfg, out, version)

    # Taste vectors and recommendations, on executors.
    tastes = taste_vectors(last_n(sequences, cfg.sequence_length), checkpoint, vectors_path, version)
    storage.overwrite(USER_TASTE_VECTORS, tastes)
    index_path = build_annoy_index(
        vectors, os.path.join(out, f"{version}-songs.ann"), cfg.annoy_metric, cfg.n_trees, cfg.seed
    )
    exclusions = exclusion_tokens(recent_tracks(events, cfg.recent_days), vocab)
    recs = recommend(
        storage.read(USER_TASTE_VECTORS).where(F.col(C.MODEL_VERSION) == version),
        exclusions,
        vocab,
        index_path,
        cfg.vector_size,
        cfg.annoy_metric,
        cfg.top_k,
        cfg.search_k,
        version,
    )
    storage.overwrite(RNN_RECOMMENDATIONS, recs)
    with open(os.path.join(out, "run.json"), "w") as fh:
        json.dump({"model_version": version, "config": asdict(cfg), "train_windows": n_train}, fh, indent=2)
    log.info("discovery %s: %d songs, %d training windows, artifacts in %s", version, len(track_ids), n_train, out)
    return DiscoveryRun(version, out, len(track_ids), n_train, checkpoint, index_path, vectors_path)
