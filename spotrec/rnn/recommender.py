"""The RNN system's methods behind :class:`spotrec.evaluation.recommender.Recommender`.

A :class:`RnnRecommender` is one way of turning a user's recent plays into a query of an Annoy index, over
one fitted :class:`~spotrec.rnn.model.RnnModel` (song vectors + taste RNN). It is constructed already
fitted: the model learns from ordered listening events (:func:`spotrec.rnn.model.fit_rnn`), not from
``gold.interactions``, so the harness (:func:`spotrec.evaluation.harness.evaluate`) scores it as given, beside
the baselines it fits itself. Methods, all from the same song vectors and the same history:

- ``rnn``: the taste RNN's output, searched in the RNN's own space (:func:`spotrec.rnn.model.rnn_index`);
- ``w2v_mean_history``: the mean of the history's song vectors (the paper's simplest taste vector);
- ``w2v_last_track``: the last played song's vector (its nearest neighbours);
- ``mean_history+rnn_bias`` (``softmax`` RNN only): the mean of history searched in the RNN's own space,
  i.e. with the RNN's learnt per-song bias added: what the recurrence adds beyond the learnt song prior.

The word2vec baselines search the song vectors with ``rnn.annoy_metric``, as word2vec neighbours always are.
Queries and searches run on executors (``mapInPandas``), with the index and vectors shipped as files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark import SparkFiles
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.columns import DISTANCE, TOKENS, VECTOR
from spotrec.config import RnnConfig
from spotrec.evaluation.split import require_columns
from spotrec.rnn.ann import exclusion_tokens, recommend, ship_file, taste_vectors
from spotrec.rnn.model import RnnModel, SongIndex, build_cfg_index, index_path, rnn_index, rnn_queries
from spotrec.tables import float_vector

RNN = "rnn"
MEAN_HISTORY = "w2v_mean_history"
LAST_TRACK = "w2v_last_track"
MEAN_HISTORY_BIAS = "mean_history+rnn_bias"
"""Ablation for a ``softmax`` RNN: the mean of history scored like the RNN's taste vector (``. vector + the
RNN's learnt song bias``), so the row shows what the recurrence adds beyond the learnt song prior."""
METHODS = (RNN, MEAN_HISTORY, LAST_TRACK, MEAN_HISTORY_BIAS)
"""Every method, in the order of the comparison table."""


def history_vectors(histories: DataFrame, vectors_npy: str, how: str) -> DataFrame:
    """Baseline queries on executors: the ``mean`` or the ``last`` of each history's song vectors.

    Args:
        histories: user_id, tokens (array<int>, oldest first).
        vectors_npy: the song-vector matrix (.npy, row = token), shipped to executors.
        how: ``mean`` or ``last``.

    Returns:
        user_id, vector (array<float>).
    """
    if how not in ("mean", "last"):
        raise ValueError(f"how must be 'mean' or 'last', got {how!r}")
    name = ship_file(histories.sparkSession, vectors_npy)

    def query(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        vectors = np.load(SparkFiles.get(name), mmap_mode="r")
        for pdf in batches:
            rows = [np.asarray(vectors[np.asarray(t, dtype=np.int64)]) for t in pdf[TOKENS]]
            out = [r.mean(axis=0) if how == "mean" else r[-1] for r in rows]
            yield pd.DataFrame({C.USER_ID: pdf[C.USER_ID].to_numpy(), VECTOR: out})

    return (
        histories.where(F.size(TOKENS) > 0)
        .select(C.USER_ID, TOKENS)
        .mapInPandas(query, f"{C.USER_ID} string, {VECTOR} array<float>")
        .select(C.USER_ID, float_vector(VECTOR).alias(VECTOR))
    )


def song_index(model: RnnModel, cfg: RnnConfig) -> SongIndex:
    """Build (once per model) the Annoy index of the song vectors with ``cfg.annoy_metric``."""
    path = index_path(model, cfg, cfg.annoy_metric)
    if not os.path.exists(path):
        build_cfg_index(model.vectors, path, cfg.annoy_metric, cfg)
    return SongIndex(path, int(model.vectors.shape[1]), cfg.annoy_metric)


class RnnRecommender:
    """One RNN-system method over a fitted model: a user's recent plays -> query -> Annoy top ``n``.

    ``score`` is the Annoy similarity: the inner product for a ``dot`` index, minus the distance otherwise,
    so it never increases with rank. Users without a history of vocabulary songs get no rows.

    Args:
        model: The fitted song vectors and taste RNN.
        histories: ``user_id, tokens`` (array<int>, oldest first): each user's last ``sequence_length``
            vocabulary plays of the data the model was fitted on (:func:`spotrec.rnn.model.user_histories`).
        cfg: The ``rnn`` section the model was fitted with (loss, Annoy metric, trees, ``search_k``).
        method: One of :data:`METHODS`; also the recommender's ``name``.
        vocabulary: ``track_id, token`` of the model (default: read from the model's files on each call).
    """

    def __init__(
        self,
        model: RnnModel,
        histories: DataFrame,
        cfg: RnnConfig,
        method: str = RNN,
        *,
        vocabulary: DataFrame | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if method == MEAN_HISTORY_BIAS and cfg.rnn_loss != "softmax":
            raise ValueError(f"{MEAN_HISTORY_BIAS} needs a softmax RNN (its learnt song bias), not {cfg.rnn_loss!r}")
        require_columns(histories, (C.USER_ID, TOKENS), "histories")
        self.name = method
        self.model = model
        self.histories = histories
        self.cfg = cfg
        self._vocabulary = vocabulary

    def _queries(self, histories: DataFrame) -> tuple[DataFrame, SongIndex]:
        model, cfg = self.model, self.cfg
        if self.name == RNN:
            tastes = taste_vectors(histories, model.checkpoint, model.vectors_path, model.model_version)
            return rnn_queries(tastes, cfg), rnn_index(model, cfg)
        if self.name == MEAN_HISTORY_BIAS:
            return rnn_queries(history_vectors(histories, model.vectors_path, "mean"), cfg), rnn_index(model, cfg)
        how = "mean" if self.name == MEAN_HISTORY else "last"
        return history_vectors(histories, model.vectors_path, how), song_index(model, cfg)

    def recommend(self, users: DataFrame, n: int, exclude: DataFrame | None = None) -> DataFrame:
        """Top ``n`` songs per user of ``users`` that has a history, never one of ``exclude``.

        Returns:
            ``user_id, track_id, rank, score``.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        require_columns(users, (C.USER_ID,), "users")
        targets = users.select(C.USER_ID).where(F.col(C.USER_ID).isNotNull()).distinct()
        vocabulary = self._vocabulary
        if vocabulary is None:
            vocabulary = self.model.vocabulary(self.histories.sparkSession)
        query, index = self._queries(self.histories.join(targets, C.USER_ID, "left_semi"))
        exclusions = None
        if exclude is not None:
            require_columns(exclude, (C.USER_ID, C.TRACK_ID), "exclude")
            pairs = exclude.select(C.USER_ID, C.TRACK_ID).distinct().join(targets, C.USER_ID, "left_semi")
            exclusions = exclusion_tokens(pairs, vocabulary)
        recs = recommend(
            query,
            exclusions,
            vocabulary,
            index.path,
            index.dimension,
            index.metric,
            n,
            self.cfg.search_budget,
            self.model.model_version,
        )
        score = F.col(DISTANCE) if index.metric == "dot" else -F.col(DISTANCE)
        return recs.select(
            C.USER_ID,
            C.TRACK_ID,
            F.col(C.RANK).cast("int").alias(C.RANK),
            score.cast("double").alias(C.SCORE),
        )


def rnn_recommenders(
    model: RnnModel, histories: DataFrame, cfg: RnnConfig, *, vocabulary: DataFrame | None = None
) -> list[RnnRecommender]:
    """Every method of the comparison in table order (``mean_history+rnn_bias`` only for a softmax RNN)."""
    methods = [m for m in METHODS if m != MEAN_HISTORY_BIAS or cfg.rnn_loss == "softmax"]
    return [RnnRecommender(model, histories, cfg, m, vocabulary=vocabulary) for m in methods]
