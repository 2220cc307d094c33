"""``spotrec rl``: user model -> simulator -> AH-DQN -> evaluation -> playlists for every user (Tomasi et al. 2023).

0. The exploration log's plays (shuffled candidate pools) into ``silver.exploration_sessions``.
1. Training rows from ``silver.listen_events`` + ``silver.tracks`` (Spark; organic and exploration sessions),
   split by session.
2. The user model is trained on the driver, evaluated on held-out sessions against baselines (and, on the
   synthetic world, against the true probabilities) into ``gold.user_model_metrics``, and checkpointed.
3. Candidate pools are drawn per user and session on executors; the AH-DQN trains in the learned simulator.
4. The agent and the baselines are evaluated in the learned simulator and, when the synthetic ground
   truth exists, against the true listener; the figures go to ``ops.model_metrics``.
5. The policy checkpoint (with the user model inside) is shipped to executors as a file, and
   ``mapInPandas`` writes each user's playlist to ``gold.rl_playlists``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.columns import SESSION
from spotrec.config import Config, RlConfig
from spotrec.rl.agent import save_policy, train_agent
from spotrec.rl.env import LearnedResponse, PlaylistEnv, ResponseModel, SessionSpec, TrueResponse
from spotrec.rl.evaluate import compare_policies, comparison_table
from spotrec.rl.features import (
    TRACK_FEATURES,
    USER_FEATURES,
    VECTOR,
    FeatureLayout,
    assign_split,
    current_user_context,
    exploration_log,
    labelled_plays,
    pack_features,
    track_feature_columns,
    training_rows,
)
from spotrec.rl.planning import SessionAgentFeatures
from spotrec.rl.policies import (
    DQNPolicy,
    GreedyUserModelPolicy,
    Policy,
    PopularityPolicy,
    RandomPolicy,
    ScorePolicy,
)
from spotrec.rl.pools import (
    candidate_pools,
    collect_sessions,
    collect_training_split,
    generate_playlists,
    true_probabilities,
)
from spotrec.rl.sequential import (
    SequentialResponse,
    compare_user_models,
    comparison_text,
    mlp_end_probabilities,
    save_sequential_user_model,
    train_sequential_user_model,
)
from spotrec.rl.user_model import UserModelData, evaluate_user_model, save_user_model, train_user_model
from spotrec.steps.base import StepContext, StepResult
from spotrec.storage import Storage
from spotrec.tables import (
    DISCOVER_WEEKLY,
    EXPLORATION_SESSIONS,
    MODEL_METRICS,
    RL_PLAYLISTS,
    SILVER_EVENTS,
    TRACK_FACTORS,
    TRACKS,
    USER_FACTORS,
    USER_MODEL_METRICS,
)

log = logging.getLogger(__name__)


def als_vectors(storage: Storage) -> tuple[DataFrame, DataFrame, int] | None:
    """ALS user and track factors as ``(user_id | track_id, vector)`` frames and their rank, if both exist.

    Appended to the user and track blocks they let the user model see taste affinity (the factors' dot
    product) directly. The factors were fit on all interactions, held-out sessions included: a mild leak
    that makes the held-out metrics slightly optimistic.
    """
    if not (storage.exists(USER_FACTORS) and storage.exists(TRACK_FACTORS)):
        return None
    users = storage.read(USER_FACTORS).select(C.USER_ID, F.col(C.FEATURES).alias(VECTOR))
    tracks = storage.read(TRACK_FACTORS).select(C.TRACK_ID, F.col(C.FEATURES).alias(VECTOR))
    first = tracks.select(F.size(VECTOR)).first()
    if first is None:
        return None
    return users, tracks, int(first[0])


def discover_weekly_scores(storage: Storage) -> DataFrame | None:
    """``user_id, track_id, score`` of the latest ``gold.discover_weekly`` week (ALS), or None without it.

    Seeds the candidate pools with each user's ALS picks and gives the ALS-score-order baseline its scores.
    """
    if not storage.exists(DISCOVER_WEEKLY):
        return None
    weekly = storage.read(DISCOVER_WEEKLY)
    latest = weekly.agg(F.max(C.WEEK).alias(C.WEEK))
    return weekly.join(latest, C.WEEK).select(C.USER_ID, C.TRACK_ID, C.SCORE)


def _ground_truth(cfg: Config) -> TrueResponse | None:
    from spotrec.synth.truth import load_ground_truth

    try:
        return TrueResponse(load_ground_truth(f"{cfg.storage.artifacts_dir.rstrip('/')}/ground_truth"))
    except FileNotFoundError:
        log.info("no synthetic ground truth: evaluating in the learned simulator only")
        return None


def training_curve(history: list[dict[str, float]], max_points: int = 100) -> list[tuple[int, float]]:
    """The agent's episodic return as at most ``max_points`` (last episode of a block, block mean) pairs,
    so ``ops.model_metrics`` stays small however long training runs (the report's RL training curve)."""
    returns = np.array([h["charts/episodic_return"] for h in history], dtype=float)
    if not len(returns):
        return []
    blocks = np.array_split(np.arange(len(returns)), min(max_points, len(returns)))
    return [(int(b[-1]) + 1, float(returns[b].mean())) for b in blocks]


@dataclass
class PlaylistRunResult:
    user_model_version: str
    policy_version: str
    policy_path: str
    evaluation: pd.DataFrame
    user_model_metrics: pd.DataFrame
    playlists_written: int
    example_session: SessionSpec | None = None
    """One evaluation session (the MLflow model's input example)."""
    user_model_comparison: pd.DataFrame | None = None
    """With ``rl.user_model: gru``: MLP vs GRU on the held-out sessions (:func:`compare_user_models`)."""


def run_playlists(
    spark: SparkSession,
    storage: Storage,
    cfg: Config,
    rl: RlConfig,
    run_id: str,
    *,
    session: str | None = None,
    scores: DataFrame | None = None,
) -> PlaylistRunResult:
    """Train, evaluate and publish the RL playlist system (see the module docstring for the stages).

    Args:
        spark: the session.
        storage: table I/O.
        cfg: the run's config (storage paths).
        rl: the RL playlist settings.
        run_id: written into ``ops.model_metrics``.
        session: key of the generated playlists' session (default: today's UTC date); a rerun with the
            same key replaces that session's rows.
        scores: optional ``user_id, track_id, score`` (e.g. :func:`discover_weekly_scores`) seeding the pools
            and the score baseline.
    """
    torch.set_num_threads(rl.torch_threads)
    torch.manual_seed(rl.seed)
    np.random.seed(rl.seed)
    session = session or dt.datetime.now(dt.UTC).date().isoformat()
    artifacts = Path(cfg.storage.artifacts_dir) / "rl"
    events, tracks = storage.read(SILVER_EVENTS), storage.read(TRACKS)
    vectors = als_vectors(storage) if rl.use_als_factors else None
    user_vecs, track_vecs, dim = vectors if vectors is not None else (None, None, 0)
    layout = FeatureLayout(user_vector_dim=dim, track_vector_dim=dim)
    log.info("user model inputs: %s", layout.to_dict())

    # 0. the exploration log (shuffled candidate pools) as its own silver table; the user model trains on it
    # together with the organic sessions
    storage.overwrite(EXPLORATION_SESSIONS, exploration_log(events, tracks, rl))
    # With an exploration log the termination head learns from it alone (see training_rows' ended_from).
    has_log = storage.read(EXPLORATION_SESSIONS).limit(1).count() > 0

    # 1-2. user model
    rows = training_rows(
        events,
        tracks,
        rl,
        user_vectors=user_vecs,
        user_vector_dim=dim,
        track_vectors=track_vecs,
        track_vector_dim=dim,
        ended_from="exploration" if has_log else "all",
    )
    rows = assign_split(pack_features(rows, layout), rl)
    splits = collect_training_split(rows, rl)
    data = {k: UserModelData.from_pandas(v) for k, v in splits.items()}
    log.info("user model rows: %s", {k: len(v) for k, v in data.items()})
    user_model = train_user_model(data["train"], data["validation"], layout, rl)
    save_user_model(user_model, artifacts / "user_model")
    truth = _ground_truth(cfg)
    true_probs = true_probabilities(truth, splits["test"]) if truth is not None and len(splits["test"]) else None
    um_metrics = evaluate_user_model(user_model, data["train"], data["test"], true_probs)
    created = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    metric_rows = [
        (
            user_model.version,
            r["head"],
            r["predictor"],
            r["metric"],
            None if pd.isna(r["bin"]) else int(r["bin"]),
            None if pd.isna(r["value"]) else float(r["value"]),
            created,
        )
        for r in um_metrics.to_dict("records")
    ]
    storage.replace_where(
        USER_MODEL_METRICS,
        spark.createDataFrame(metric_rows, USER_MODEL_METRICS.schema),
        f"{C.MODEL_VERSION} = '{user_model.version}'",
    )

    # 2b. the sequential user model (rl.user_model: gru): compared with the MLP, then the simulator's engine
    response: ResponseModel = LearnedResponse(user_model)
    comparison = None
    if rl.user_model == "gru":
        gru = train_sequential_user_model(data["train"], data["validation"], layout, rl)
        save_sequential_user_model(gru, artifacts / "user_model_gru")
        gru_probs, gru_end = gru.predict_rows(data["test"])
        mlp_end = mlp_end_probabilities(user_model, data["test"])
        ends = {k: v for k, v in (("mlp", mlp_end), ("gru", gru_end)) if v is not None}
        comparison = compare_user_models(
            {"mlp": user_model.predict(data["test"]), "gru": gru_probs}, data["test"], rl.calibration_bins, ends
        )
        log.info(
            "user models on held-out sessions (%s vs %s):\n%s",
            user_model.version,
            gru.version,
            comparison_text(comparison),
        )
        response = SequentialResponse(gru)

    # 3. pools, simulator, agent
    plays = labelled_plays(events, tracks, rl)
    catalogue = pack_features(track_feature_columns(tracks, plays, rl, track_vecs, dim), layout).withColumn(
        "popularity", F.element_at(TRACK_FEATURES, layout.track.index("t_popularity") + 1).cast("double")
    )
    context = pack_features(
        current_user_context(events, tracks, rl, user_vectors=user_vecs, user_vector_dim=dim), layout
    ).select(C.USER_ID, USER_FEATURES)
    # Both are small (one row per track / user) and feed three pool draws and the generation.
    catalogue, context = catalogue.cache(), context.cache()
    sample_users = context.select(C.USER_ID).orderBy(F.xxhash64(C.USER_ID, F.lit(rl.seed))).limit(rl.training_users)
    train_sessions = collect_sessions(
        candidate_pools(sample_users, catalogue, rl, [f"train-{i}" for i in range(4)], scores), context
    )
    env = PlaylistEnv(train_sessions, response, rl, layout)
    if rl.q_user_model_features and rl.q_session_features:
        features = SessionAgentFeatures.fit(user_model, layout, data["train"].track)
        agent = train_agent(env, rl, features=features)
    else:
        agent = train_agent(env, rl, user_model=user_model if rl.q_user_model_features else None)
    policy_path = save_policy(agent, user_model, artifacts / "policy")

    # 4. evaluation: same fresh sessions, every policy, learned and (when known) true world
    # With fewer users than sessions asked for, each user gets several fresh pools (eval-0, eval-1, ...).
    n_users = context.count()
    per_user = max(1, -(-rl.eval_sessions // max(n_users, 1)))
    eval_users = (
        context.select(C.USER_ID)
        .orderBy(F.xxhash64(C.USER_ID, F.lit(rl.seed + 1)))
        .limit(-(-rl.eval_sessions // per_user))
    )
    eval_keys = [f"eval-{i}" for i in range(per_user)]
    eval_sessions = collect_sessions(candidate_pools(eval_users, catalogue, rl, eval_keys, scores), context)
    eval_sessions = eval_sessions[: rl.eval_sessions]
    log.info("evaluating on %d sessions (%d per user)", len(eval_sessions), per_user)
    policies: list[Policy] = [RandomPolicy(), PopularityPolicy()]
    if scores is not None:
        policies.append(ScorePolicy())
    policies += [GreedyUserModelPolicy(response, rl), DQNPolicy(agent.q, features=agent.features)]
    worlds: dict[str, ResponseModel] = {"learned_sim": response}
    if truth is not None:
        worlds["true_world"] = truth
        # The ceiling of a myopic policy: greedy on the true listener (the session so far included).
        policies.append(GreedyUserModelPolicy(truth, rl, name="oracle_true_listener"))
    evaluation = compare_policies(policies, worlds, eval_sessions, rl, layout)
    eval_rows: list[tuple[object, ...]] = [
        (
            run_id,
            f"rl_policy:{r['policy']}",
            agent.version,
            r["world"],
            f"{r['metric']}_{stat}",
            None,
            float(r[stat]),
            created,
        )
        for r in evaluation.to_dict("records")
        for stat in ("mean", "ci_low", "ci_high")
    ]
    eval_rows += [
        (run_id, "rl_policy:ah_dqn", agent.version, "training", "episodic_return", episode, value, created)
        for episode, value in training_curve(agent.history)
    ]
    if comparison is not None:  # MLP vs GRU user model on the held-out sessions
        versions = {"mlp": user_model.version, "gru": response.model.version}  # type: ignore[attr-defined]
        eval_rows += [
            (
                run_id,
                f"rl_user_model:{r['predictor']}",
                versions[r["predictor"]],
                "test",
                f"{r['head']}_{r['metric']}",
                None,
                None if pd.isna(r["value"]) else float(r["value"]),
                created,
            )
            for r in comparison.to_dict("records")
        ]
    storage.append(MODEL_METRICS, spark.createDataFrame(eval_rows, MODEL_METRICS.schema))

    # 5. playlists for every user, on executors
    all_sessions = candidate_pools(context.select(C.USER_ID), catalogue, rl, [session], scores).join(context, C.USER_ID)
    playlists = generate_playlists(spark, all_sessions, str(policy_path))
    storage.replace_where(RL_PLAYLISTS, playlists, f"{SESSION} = '{session}'")
    written = storage.read(RL_PLAYLISTS).where(F.col(SESSION) == session).count()
    catalogue.unpersist()
    context.unpersist()
    log.info("gold.rl_playlists: %d rows for session %s (policy %s)", written, session, agent.version)
    return PlaylistRunResult(
        user_model_version=user_model.version,
        policy_version=agent.version,
        policy_path=str(policy_path),
        evaluation=evaluation,
        user_model_metrics=um_metrics,
        playlists_written=written,
        example_session=eval_sessions[0] if eval_sessions else None,
        user_model_comparison=comparison,
    )


def run(ctx: StepContext) -> StepResult:
    from spotrec.steps.needs import missing, skip

    inputs = [SILVER_EVENTS, TRACKS, USER_FACTORS, TRACK_FACTORS, DISCOVER_WEEKLY]
    absent = missing(ctx.storage, inputs)
    if absent:
        return skip(ctx, "rl", f"needs {', '.join(absent)} (listening events and the weekly step's output)")
    with ctx.tracked(
        "rl", inputs=inputs, outputs=[EXPLORATION_SESSIONS, USER_MODEL_METRICS, RL_PLAYLISTS, MODEL_METRICS]
    ) as run_id:
        r = run_playlists(
            ctx.spark, ctx.storage, ctx.cfg, ctx.cfg.rl, run_id, scores=discover_weekly_scores(ctx.storage)
        )
        ctx.say(f"[rl] {r.user_model_version} / {r.policy_version}: {r.playlists_written:,} rows")
        if r.user_model_comparison is not None:
            ctx.say("[rl] user models on held-out sessions (AUC, log-loss, calibration error per head):")
            ctx.say(comparison_text(r.user_model_comparison))
        ctx.say(comparison_table(r.evaluation))
        if ctx.tracker is not None and r.example_session is not None:  # the policy as an MLflow pyfunc model
            from spotrec.tracking import log_policy

            spec = r.example_session
            example = pd.DataFrame(
                {"user_features": [spec.user_features.tolist()], "candidate_features": [spec.track_features.tolist()]}
            )
            log_policy(ctx.tracker, r.policy_path, example)
    return ctx.result("rl", run_id)
