"""The RNN system on the same last-week split as ALS: its methods vs popularity, through the one harness.

The split is :func:`spotrec.evaluation.split.time_split` (train = everything before the last 7 whole days)
and the hits are :func:`spotrec.evaluation.split.relevant_items` (tracks a user played in the test week and
had not played in training), exactly as the ``evaluate`` step scores ALS. Song vectors and the RNN are fitted
on the training weeks only (:func:`spotrec.rnn.model.fit_rnn`); each user's query is built from
their last ``sequence_length`` training plays, and every method recommends unheard tracks only (everything
the user played in training is excluded), through the same Annoy index the served path uses.

Methods: the :mod:`spotrec.rnn.recommender` methods (``rnn``, ``w2v_mean_history``, ``w2v_last_track`` and,
for a ``softmax`` RNN, ``mean_history+rnn_bias``) and ``popularity``
(:class:`spotrec.evaluation.baselines.PopularityRecommender` on the training plays: the same baseline the ALS
table has, so the two tables can be checked against each other). All are scored by
:func:`spotrec.evaluation.harness.evaluate`.

Metrics: the harness's ranking metrics at ``k`` against all relevant tracks (precision, recall, MAP, NDCG,
hit rate, coverage, novelty, popularity bias, artist diversity), and the *next-track* metrics: hit rate at
``k`` and at ``next_k`` and MRR (within ``next_k``) of each user's first new track of the test week
(:func:`spotrec.evaluation.split.first_new_tracks`, :func:`spotrec.evaluation.metrics.next_track_metrics`).
Every figure goes to ``ops.model_metrics`` (dataset ``last-week``) under the run id; the printed table puts
the latest stored ALS / co-occurrence rows of the ``evaluate`` step beside these (ALS recommendations are not
stored per split, so its next-track cells stay empty rather than being guessed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from spotrec import columns as C
from spotrec.config import Config
from spotrec.evaluation import metrics as M
from spotrec.evaluation.baselines import PopularityRecommender
from spotrec.evaluation.harness import EvalResult, evaluate, format_cell, markdown_table
from spotrec.evaluation.metrics import NEXT_HIT_RATE, NEXT_MRR
from spotrec.evaluation.recommender import Recommender
from spotrec.evaluation.split import first_new_tracks, relevant_items
from spotrec.rnn.model import RnnModel, fit_rnn, user_histories
from spotrec.rnn.recommender import rnn_recommenders

log = logging.getLogger(__name__)

DATASET = "last-week"
"""Same dataset label as the ALS evaluation (:mod:`spotrec.steps.evaluate`)."""
POPULARITY = "popularity"
STORED_MODELS = ("als", "als-cg", "cooccurrence")
"""Rows of the ``evaluate`` step printed beside the RNN methods (the ALS row is named by its solver:
``als`` for MLlib, ``als-cg`` for the conjugate-gradient default; one run has one of them)."""


@dataclass
class RnnEvaluation:
    """What :func:`evaluate_last_week` measured, and the model it measured."""

    results: list[EvalResult]
    """One per method; metrics at ``k`` plus ``next_track_*@next_k`` keys (see :func:`evaluate_last_week`)."""
    model: RnnModel
    users: int
    stored: list[EvalResult] = field(default_factory=list)
    """The latest ALS / co-occurrence rows of the ``evaluate`` step, as stored in ops.model_metrics."""


def metrics_rows(spark: SparkSession, result: EvalResult, run_id: str, version: str | None, next_k: int) -> DataFrame:
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
    rows = [[r.model, *[format_cell(r.metrics.get(key.format(n=next_k))) for _, key in _COLUMNS]] for r in results]
    return markdown_table(header, rows)


def evaluate_last_week(
    spark: SparkSession,
    train: DataFrame,
    test: DataFrame,
    playlists: DataFrame | None,
    tracks: DataFrame | None,
    cfg: Config,
    out: str,
    version: str,
) -> RnnEvaluation:
    """Fit on ``train``, score the RNN methods and popularity on ``test`` (the last week's events).

    Args:
        spark: the session.
        train: the training weeks' events (event_id, user_id, track_id, ts, session_id, session_position).
        test: the test week's events (user_id, track_id, ts, event_id, ...).
        playlists: silver.playlists for the song vectors, or None.
        tracks: silver.tracks (artist diversity), or None.
        cfg: the whole config (``rnn`` for the model, ``weekly.eval_k`` for the cut-off ALS uses).
        out: the fitted model's artifacts folder.
        version: the fitted model's version.

    Returns:
        The results (one per method, popularity last; each with the harness's metrics at ``k = weekly.eval_k``
        and the next-track metrics at ``k`` and at ``next_k = max(rnn.eval_next_k, k)``, the list length) and
        the fitted model, which the rnn step serves unless ``rnn.refit_for_serving`` is set.
    """
    dcfg = cfg.rnn
    k, next_k = cfg.weekly.eval_k, max(dcfg.eval_next_k, cfg.weekly.eval_k)
    train = train.persist(StorageLevel.MEMORY_AND_DISK)
    model = fit_rnn(spark, train, playlists, dcfg, out, version)
    vocab = model.vocabulary(spark).persist(StorageLevel.MEMORY_AND_DISK)
    relevant = relevant_items(train, test).persist(StorageLevel.MEMORY_AND_DISK)
    next_tracks = first_new_tracks(train, test).persist(StorageLevel.MEMORY_AND_DISK)
    users = relevant.select(C.USER_ID).distinct()
    histories = (
        user_histories(train, vocab, dcfg).join(users, C.USER_ID, "left_semi").persist(StorageLevel.MEMORY_AND_DISK)
    )
    recommenders: list[Recommender] = [
        *rnn_recommenders(model, histories, dcfg, vocabulary=vocab),
        PopularityRecommender(POPULARITY),
    ]
    try:
        results = evaluate(recommenders, train, relevant, k=k, n=next_k, tracks=tracks, next_tracks=next_tracks)
    finally:
        for frame in (vocab, relevant, next_tracks, histories, train):
            frame.unpersist()
    return RnnEvaluation(results, model, results[0].users)
