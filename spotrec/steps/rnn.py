"""``spotrec rnn``: word2vec song vectors, the taste RNN and Annoy recommendations (De Boom et al. 2017).

First the model is fitted on all but the last week and scored on it beside ALS (the same split and relevance
as ``spotrec evaluate``); then that model (or, with ``rnn.refit_for_serving``, one refitted on every event)
serves: gold.track_embeddings, gold.user_taste_vectors and gold.rnn_recommendations.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.columns import METHOD
from spotrec.config import Config, RnnConfig
from spotrec.evaluation.harness import EvalResult
from spotrec.evaluation.split import chosen_plays, time_split
from spotrec.features.documents import recent_tracks
from spotrec.rnn.ann import exclusion_tokens, recommend, taste_vectors
from spotrec.rnn.model import (
    RnnModel,
    RnnServing,
    default_model_version,
    fit_rnn,
    rnn_index,
    rnn_queries,
    user_histories,
)
from spotrec.rnn.week_eval import (
    DATASET,
    POPULARITY,
    STORED_MODELS,
    RnnEvaluation,
    evaluate_last_week,
    format_results,
    metrics_rows,
)
from spotrec.steps.base import StepContext, StepResult
from spotrec.storage import Storage
from spotrec.tables import (
    MODEL_METRICS,
    PLAYLISTS,
    RNN_RECOMMENDATIONS,
    RNN_TABLES,
    SILVER_EVENTS,
    TRACK_EMBEDDINGS,
    TRACKS,
    USER_TASTE_VECTORS,
)

log = logging.getLogger(__name__)

EVENT_COLUMNS = (C.EVENT_ID, C.USER_ID, C.TRACK_ID, C.TS, C.SESSION_ID, C.SESSION_POSITION)


def stored_results(storage: Storage, models: Sequence[str] = STORED_MODELS) -> list[EvalResult]:
    """The newest ``last-week`` rows of ``models`` in ops.model_metrics (the ``evaluate`` step's), if any."""
    if not storage.exists(MODEL_METRICS):
        return []
    rows = storage.read(MODEL_METRICS).where((F.col("dataset") == DATASET) & F.col(C.MODEL).isin(*models))
    newest = rows.orderBy(F.col("created_at").desc()).select(C.RUN_ID).first()
    if newest is None:
        return []
    by_model: dict[str, EvalResult] = {}
    for r in rows.where(F.col(C.RUN_ID) == newest[C.RUN_ID]).collect():
        result = by_model.setdefault(r[C.MODEL], EvalResult(model=r[C.MODEL], k=int(r[C.K] or 0), n=int(r[C.K] or 0)))
        result.metrics[r[C.METRIC]] = float("nan") if r[C.VALUE] is None else float(r[C.VALUE])
    return [by_model[m] for m in models if m in by_model]


def evaluate_rnn(
    spark: SparkSession,
    storage: Storage,
    cfg: Config,
    run_id: str,
    model_version: str | None = None,
    test_days: int = 7,
    say: Callable[[str], None] = print,
) -> RnnEvaluation:
    """Fit on the training weeks, score on the test week, store the figures and report the table.

    Returns:
        The results (rnn methods first; ``stored`` holds the evaluate step's ALS rows) and the fitted model.
    """
    dcfg = cfg.rnn
    k, next_k = cfg.weekly.eval_k, max(dcfg.eval_next_k, cfg.weekly.eval_k)
    events = storage.read(SILVER_EVENTS).select(*EVENT_COLUMNS, C.CONTEXT_TYPE)
    train, test = time_split(events, test_days=test_days)
    train, test = train.drop(C.CONTEXT_TYPE), chosen_plays(test).drop(C.CONTEXT_TYPE)
    version = model_version or default_model_version(dcfg)
    out = os.path.join(cfg.storage.artifacts_dir, "rnn", version)
    playlists = storage.read(PLAYLISTS) if dcfg.use_playlists and storage.exists(PLAYLISTS) else None
    tracks = storage.read(TRACKS) if storage.exists(TRACKS) else None
    evaluation = evaluate_last_week(spark, train, test, playlists, tracks, cfg, out, version)
    results, n_users = evaluation.results, evaluation.users
    frames = [metrics_rows(spark, r, run_id, version if r.model != POPULARITY else None, next_k) for r in results]
    storage.append(MODEL_METRICS, reduce(DataFrame.unionByName, frames))
    stored = stored_results(storage)
    say(
        f"[rnn] word2vec + taste RNN, train = all but the last {test_days} days, test = unheard tracks "
        f"played in them ({n_users:,} users), k={k}; next = each user's first new track of the test week"
    )
    say(format_results([*results, *stored], k, next_k))
    if not stored:
        say("[rnn] (no ALS rows in ops.model_metrics for dataset last-week: run `spotrec evaluate` first)")
    evaluation.stored = stored
    return evaluation


def serve_rnn(
    spark: SparkSession,
    storage: Storage,
    cfg: RnnConfig,
    artifacts_dir: str,
    model_version: str | None = None,
    model: RnnModel | None = None,
) -> RnnServing:
    """Train song vectors and the taste RNN, then write taste vectors and recommendations for every user.

    Args:
        spark: the session (used for Parquet I/O of the training batches).
        storage: where silver inputs are read and gold outputs written.
        cfg: the rnn configuration.
        artifacts_dir: root folder for model files.
        model_version: names this run's rows and files (default: :func:`default_model_version`); ignored with
            ``model``.
        model: serve this already fitted model instead of fitting one on all events (the pipeline passes the
            model it just evaluated on the training weeks, so the served model is the measured one).

    Raises:
        SpotrecError: the data gives no training windows (too few plays per user for ``sequence_length``).
    """
    events = storage.read(SILVER_EVENTS).select(
        C.EVENT_ID, C.USER_ID, C.TRACK_ID, C.TS, C.SESSION_ID, C.SESSION_POSITION
    )
    if model is None:
        version = model_version or default_model_version(cfg)
        out = os.path.join(artifacts_dir, "rnn", version)
        playlists = storage.read(PLAYLISTS) if cfg.use_playlists and storage.exists(PLAYLISTS) else None
        model = fit_rnn(spark, events, playlists, cfg, out, version)
    version, out = model.model_version, model.artifacts
    storage.replace_where(TRACK_EMBEDDINGS, model.embeddings, f"{METHOD} = '{cfg.method}'")
    vocab = model.vocabulary(spark)

    # Taste vectors (from every user's latest plays, the last week included) and recommendations, on executors.
    tastes = taste_vectors(user_histories(events, vocab, cfg), model.checkpoint, model.vectors_path, version)
    storage.overwrite(USER_TASTE_VECTORS, tastes)
    index = rnn_index(model, cfg)
    exclusions = exclusion_tokens(recent_tracks(events, cfg.recent_days), vocab)
    recs = recommend(
        rnn_queries(storage.read(USER_TASTE_VECTORS).where(F.col(C.MODEL_VERSION) == version), cfg),
        exclusions,
        vocab,
        index.path,
        index.dimension,
        index.metric,
        cfg.top_k,
        cfg.search_budget,
        version,
    )
    storage.overwrite(RNN_RECOMMENDATIONS, recs)
    with open(os.path.join(out, "run.json"), "w") as fh:
        json.dump(
            {"model_version": version, "config": cfg.model_dump(), "train_windows": model.train_windows}, fh, indent=2
        )
    log.info("rnn %s served: recommendations in %s", version, RNN_RECOMMENDATIONS.full_name)
    return RnnServing(
        version, out, model.vocabulary_size, model.train_windows, model.checkpoint, index.path, model.vectors_path
    )


def run(ctx: StepContext) -> StepResult:
    from spotrec.steps.needs import listeners, skip, too_few_listeners

    if not ctx.storage.exists(SILVER_EVENTS):
        return skip(
            ctx, "rnn", "no listening events with timestamps (play counts only): the taste RNN needs plays in order"
        )
    why = too_few_listeners(listeners(ctx.storage, SILVER_EVENTS))
    if why:
        return skip(ctx, "rnn", why)
    with ctx.tracked("rnn", inputs=[SILVER_EVENTS, PLAYLISTS], outputs=[*RNN_TABLES, MODEL_METRICS]) as run_id:
        # Fit on the training weeks and score the test week beside ALS; serve that same model (or refit).
        evaluated = evaluate_rnn(ctx.spark, ctx.storage, ctx.cfg, run_id, say=ctx.say)
        dcfg = ctx.cfg.rnn
        served = serve_rnn(
            ctx.spark,
            ctx.storage,
            dcfg,
            ctx.cfg.storage.artifacts_dir,
            model=None if dcfg.refit_for_serving else evaluated.model,
        )
        ctx.say(
            f"[rnn] model {served.model_version}: {served.vocabulary_size:,} songs, {served.train_windows:,} training "
            f"windows; checkpoint {served.checkpoint}; Annoy index {served.index_path}"
        )
        if ctx.tracker is not None:  # the taste RNN as an MLflow pyfunc model (history tokens -> taste vector)
            from spotrec.tracking import log_taste_rnn

            log_taste_rnn(ctx.tracker, served.checkpoint, served.vectors_path)
    return ctx.result("rnn", run_id)
