"""The discovery system on the same last-week split as ALS: taste RNN vs word2vec and popularity baselines.

The split is :func:`spotrec.evaluation.split.time_split` (train = everything before the last 7 whole days)
and the hits are :func:`spotrec.evaluation.split.relevant_items` (tracks a user played in the test week and
had not played in training), exactly as the ``evaluate`` step scores ALS. Song vectors and the RNN are fitted
on the training weeks only (:func:`spotrec.rnn.model.fit_discovery`); each user's query is built from
their last ``sequence_length`` training plays, and every method recommends unheard tracks only (everything
the user played in training is excluded), through the same Annoy index the served path uses.

Methods, all from the same song vectors and the same history:

- ``rnn``: the taste RNN's output;
- ``w2v_mean_history``: the mean of the history's song vectors (the paper's simplest taste vector);
- ``w2v_last_track``: the last played song's vector (its nearest neighbours);
- ``mean_history+rnn_bias`` (``softmax`` RNN only): the mean of history searched in the RNN's own space, i.e.
  with the RNN's learnt per-song bias added: what the recurrence adds beyond the learnt song prior;
- ``popularity``: :class:`spotrec.weekly.baselines.PopularityRecommender` on the training plays (the same
  baseline the ALS table has, so the two tables can be checked against each other).

Metrics: the harness's ranking metrics at ``k`` against all relevant tracks (precision, recall, MAP, NDCG,
hit rate, coverage, novelty, popularity bias, artist diversity), and the *next-track* metrics: hit rate at
``k`` and at ``next_k`` and MRR (within ``next_k``) of each user's first new track of the test week. Every
figure goes to ``ops.model_metrics`` (dataset ``last-week``) under the run id; the printed table puts the
latest stored ALS / co-occurrence rows of the ``evaluate`` step beside these (ALS recommendations are not
stored per split, so its next-track cells stay empty rather than being guessed).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark import SparkFiles, StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.columns import TOKENS, VECTOR
from spotrec.config import Config
from spotrec.evaluation import metrics as M
from spotrec.evaluation.harness import EvalResult
from spotrec.evaluation.split import relevant_items
from spotrec.rnn.ann import build_annoy_index, exclusion_tokens, recommend, ship_file, taste_vectors
from spotrec.rnn.model import DiscoveryModel, SongIndex, fit_discovery, rnn_index, rnn_queries, user_histories
from spotrec.tables import float_vector
from spotrec.weekly.baselines import PopularityRecommender

log = logging.getLogger(__name__)

DATASET = "last-week"
"""Same dataset label as the ALS evaluation (:mod:`spotrec.steps.evaluate`)."""
RNN = "rnn"
MEAN_HISTORY = "w2v_mean_history"
MEAN_HISTORY_BIAS = "mean_history+rnn_bias"
"""Ablation for a ``softmax`` RNN: the mean of history scored like the RNN's taste vector (``. vector + the
RNN's learnt song bias``), so the row shows what the recurrence adds beyond the learnt song prior."""
LAST_TRACK = "w2v_last_track"
POPULARITY = "popularity"
NEXT_HIT_RATE = "next_track_hit_rate"
"""Share of users whose first new track of the test week is in their top k."""
NEXT_MRR = "next_track_mrr"
"""Mean of 1 / rank of the first new track of the test week (0 when outside the top k)."""
STORED_MODELS = ("als", "cooccurrence")
"""Rows of the ``evaluate`` step printed beside the discovery methods."""


@dataclass
class DiscoveryEvaluation:
    """What :func:`run_discovery_evaluation` measured, and the model it measured."""

    results: list[EvalResult]
    """One per method; metrics at ``k`` plus ``next_track_*@next_k`` keys (see :func:`next_track_metrics`)."""
    model: DiscoveryModel
    users: int
    stored: list[EvalResult] = field(default_factory=list)
    """The latest ALS / co-occurrence rows of the ``evaluate`` step, as stored in ops.model_metrics."""


def first_new_tracks(train: DataFrame, test: DataFrame) -> DataFrame:
    """Each training user's first test play of a track they had not played in training (ties by event_id).

    Returns:
        user_id, track_id: one row per user with at least one new track in the test period.
    """
    heard = train.select(C.USER_ID, C.TRACK_ID).distinct()
    first = Window.partitionBy(C.USER_ID).orderBy(C.TS, C.EVENT_ID)
    return (
        test.select(C.USER_ID, C.TRACK_ID, C.TS, C.EVENT_ID)
        .join(heard, [C.USER_ID, C.TRACK_ID], "left_anti")
        .join(train.select(C.USER_ID).distinct(), [C.USER_ID], "left_semi")
        .withColumn("_n", F.row_number().over(first))
        .where(F.col("_n") == 1)
        .select(C.USER_ID, C.TRACK_ID)
    )


def next_track_metrics(recs: DataFrame, next_tracks: DataFrame, k: int) -> dict[str, float]:
    """Hit rate at ``k`` and MRR (within ``k``) of one held-out track per user; users without recs score 0.

    Args:
        recs: user_id, track_id, rank (1-based).
        next_tracks: user_id, track_id (one per user; e.g. :func:`first_new_tracks`).
        k: cut-off.

    Returns:
        ``{NEXT_HIT_RATE: ..., NEXT_MRR: ...}``.
    """
    return next_track_metrics_at(recs, next_tracks, [k])[k]


def next_track_metrics_at(recs: DataFrame, next_tracks: DataFrame, ks: Sequence[int]) -> dict[int, dict[str, float]]:
    """:func:`next_track_metrics` for several cut-offs in one Spark job: ``k -> metrics``."""
    if not ks or min(ks) < 1:
        raise ValueError(f"cut-offs must be >= 1, got {list(ks)}")
    found = (
        recs.where(F.col(C.RANK) <= max(ks))
        .join(next_tracks, [C.USER_ID, C.TRACK_ID])
        .groupBy(C.USER_ID)
        .agg(F.min(C.RANK).alias("_rank"))
    )
    columns = []
    for k in ks:
        within = F.col("_rank").isNotNull() & (F.col("_rank") <= k)
        columns += [
            F.avg(F.when(within, 1.0).otherwise(0.0)).alias(f"hit{k}"),
            F.avg(F.when(within, 1.0 / F.col("_rank")).otherwise(0.0)).alias(f"mrr{k}"),
        ]
    row = next_tracks.select(C.USER_ID).distinct().join(found, C.USER_ID, "left").agg(*columns).first()
    if row is None or row[f"hit{ks[0]}"] is None:
        raise ValueError("next_tracks is empty: no user has a new track in the test period")
    return {k: {NEXT_HIT_RATE: float(row[f"hit{k}"]), NEXT_MRR: float(row[f"mrr{k}"])} for k in ks}


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


def score_recommendations(
    recs: DataFrame,
    relevant: DataFrame,
    next_tracks: DataFrame,
    popularity: DataFrame,
    tracks: DataFrame | None,
    n_items: int,
    k: int,
    next_k: int,
) -> dict[str, float]:
    """The harness's metrics at ``k`` plus next-track hit rate / MRR at ``k`` and at ``next_k``.

    Keys: the :mod:`spotrec.evaluation.metrics` names (at ``k``), ``next_track_hit_rate`` and
    ``next_track_mrr`` (at ``k``), and ``next_track_hit_rate@<next_k>``, ``next_track_mrr@<next_k>``.
    """
    scores = M.ranking_metrics(recs, relevant, k)
    scores[M.COVERAGE] = M.catalogue_coverage(recs, n_items, k)
    scores[M.NOVELTY] = M.novelty(recs, popularity, k)
    scores[M.POPULARITY_BIAS] = M.popularity_bias(recs, popularity, k)
    if tracks is not None:
        scores[M.ARTIST_DIVERSITY] = M.artist_diversity(recs, tracks, k)
    at = next_track_metrics_at(recs, next_tracks, [k, next_k])
    scores.update(at[k])
    if next_k != k:
        scores.update({f"{name}@{next_k}": v for name, v in at[next_k].items()})
    return scores


def _metrics_rows(spark: SparkSession, result: EvalResult, run_id: str, version: str | None, next_k: int) -> DataFrame:
    """ops.model_metrics rows: metrics at ``k``, and the ``@next_k`` ones with ``k = next_k``."""
    suffix = f"@{next_k}"
    at_k = {name: v for name, v in result.metrics.items() if not name.endswith(suffix)}
    at_next = {name[: -len(suffix)]: v for name, v in result.metrics.items() if name.endswith(suffix)}
    frame = M.metrics_frame(spark, run_id, result.model, version, DATASET, at_k, result.k)
    if at_next:
        frame = frame.unionByName(M.metrics_frame(spark, run_id, result.model, version, DATASET, at_next, next_k))
    return frame


_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ndcg@{k}", M.NDCG),
    ("map@{k}", M.MAP),
    ("recall@{k}", M.RECALL),
    ("hit@{k}", M.HIT_RATE),
    ("next hit@{k}", NEXT_HIT_RATE),
    ("next hit@{n}", NEXT_HIT_RATE + "@{n}"),
    ("next MRR@{n}", NEXT_MRR + "@{n}"),
    ("coverage", M.COVERAGE),
    ("novelty", M.NOVELTY),
)


def format_results(results: Sequence[EvalResult], k: int, next_k: int) -> str:
    """A Markdown table, one row per model; a missing metric prints as ``-``."""
    header = ["model", *[title.format(k=k, n=next_k) for title, _ in _COLUMNS]]

    def cell(value: float | None) -> str:
        return "-" if value is None or math.isnan(value) else f"{value:.4f}"

    rows = [[r.model, *[cell(r.metrics.get(key.format(n=next_k))) for _, key in _COLUMNS]] for r in results]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) + " |"
        for line in [header, *rows]
    ]
    rule = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([lines[0], rule, *lines[1:]])


def evaluate_last_week(
    spark: SparkSession,
    train: DataFrame,
    test: DataFrame,
    playlists: DataFrame | None,
    tracks: DataFrame | None,
    cfg: Config,
    out: str,
    version: str,
) -> DiscoveryEvaluation:
    """Fit on ``train``, score the RNN and its baselines on ``test`` (the last week's events).

    Args:
        spark: the session.
        train: the training weeks' events (event_id, user_id, track_id, ts, session_id, session_position).
        test: the test week's events (user_id, track_id, ts, ...).
        playlists: silver.playlists for the song vectors, or None.
        tracks: silver.tracks (artist diversity), or None.
        cfg: the whole config (``rnn`` for the model, ``weekly.eval_k`` for the cut-off ALS uses).
        out: the fitted model's artifacts folder.
        version: the fitted model's version.

    Returns:
        The results (one per method) and the fitted model, which the rnn step serves unless
        ``rnn.refit_for_serving`` is set.
    """
    dcfg = cfg.rnn
    k, next_k = cfg.weekly.eval_k, max(dcfg.eval_next_k, cfg.weekly.eval_k)
    train = train.persist(StorageLevel.MEMORY_AND_DISK)
    model = fit_discovery(spark, train, playlists, dcfg, out, version)
    vocab = model.vocabulary(spark).persist(StorageLevel.MEMORY_AND_DISK)
    relevant = relevant_items(train, test).persist(StorageLevel.MEMORY_AND_DISK)
    next_tracks = first_new_tracks(train, test).persist(StorageLevel.MEMORY_AND_DISK)
    users = relevant.select(C.USER_ID).distinct()
    n_users = users.count()
    histories = (
        user_histories(train, vocab, dcfg).join(users, C.USER_ID, "left_semi").persist(StorageLevel.MEMORY_AND_DISK)
    )
    heard = train.select(C.USER_ID, C.TRACK_ID).distinct().join(users, C.USER_ID, "left_semi")
    exclusions = exclusion_tokens(heard, vocab).persist(StorageLevel.MEMORY_AND_DISK)
    popularity = M.item_popularity(train).persist(StorageLevel.MEMORY_AND_DISK)
    n_items = popularity.count()
    # The RNN searches its own space (for softmax: [vector, bias] by inner product); the baselines search the
    # song vectors with the configured metric, as word2vec neighbours always are.
    songs = SongIndex(
        os.path.join(out, f"{version}-songs-{dcfg.annoy_metric}.ann"), dcfg.vector_size, dcfg.annoy_metric
    )
    if not os.path.exists(songs.path):
        build_annoy_index(model.vectors, songs.path, songs.metric, dcfg.n_trees, dcfg.seed)
    queries = {
        RNN: (
            rnn_queries(taste_vectors(histories, model.checkpoint, model.vectors_path, version), dcfg),
            rnn_index(model, dcfg),
        ),
        MEAN_HISTORY: (history_vectors(histories, model.vectors_path, "mean"), songs),
        LAST_TRACK: (history_vectors(histories, model.vectors_path, "last"), songs),
    }
    if dcfg.rnn_loss == "softmax":
        mean = history_vectors(histories, model.vectors_path, "mean")
        queries[MEAN_HISTORY_BIAS] = (rnn_queries(mean, dcfg), rnn_index(model, dcfg))
    results: list[EvalResult] = []
    try:
        for name, (query, index) in queries.items():
            recs = recommend(
                query, exclusions, vocab, index.path, index.dimension, index.metric, next_k, dcfg.search_k, version
            ).select(C.USER_ID, C.TRACK_ID, C.RANK)
            results.append(_scored(name, recs, relevant, next_tracks, popularity, tracks, n_items, k, next_k, n_users))
        pop = PopularityRecommender(POPULARITY).fit(train).recommend(users, next_k, heard)
        results.append(_scored(POPULARITY, pop, relevant, next_tracks, popularity, tracks, n_items, k, next_k, n_users))
    finally:
        for frame in (vocab, relevant, next_tracks, histories, exclusions, popularity, train):
            frame.unpersist()

    return DiscoveryEvaluation(results, model, n_users)


def _scored(
    name: str,
    recs: DataFrame,
    relevant: DataFrame,
    next_tracks: DataFrame,
    popularity: DataFrame,
    tracks: DataFrame | None,
    n_items: int,
    k: int,
    next_k: int,
    n_users: int,
) -> EvalResult:
    recs = recs.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        metrics = score_recommendations(recs, relevant, next_tracks, popularity, tracks, n_items, k, next_k)
    finally:
        recs.unpersist()
    log.info("discovery eval %s: %s", name, {m: round(v, 4) for m, v in metrics.items()})
    return EvalResult(model=name, k=k, n=next_k, metrics=metrics, users=n_users)
