"""The RL playlist step: user model -> simulator -> AH-DQN -> evaluation -> playlists for every user.

1. Training rows from ``silver.listen_events`` + ``silver.tracks`` (Spark), split by session.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from spotrec import columns as C
from spotrec.config import Config
from spotrec.playlists.agent import load_policy, save_policy, train_agent
from spotrec.playlists.config import PlaylistRLConfig
from spotrec.playlists.env import LearnedResponse, PlaylistEnv, ResponseModel, SessionSpec, TrueResponse
from spotrec.playlists.evaluate import compare_policies
from spotrec.playlists.features import (
    CONTEXT_FEATURES,
    LABELS,
    SKIP_RUN_CAP,
    SPLIT,
    TRACK_FEATURES,
    USER_FEATURES,
    VECTOR,
    FeatureLayout,
    assign_split,
    current_user_context,
    labelled_plays,
    pack_features,
    track_feature_columns,
    training_rows,
)
from spotrec.playlists.policies import (
    DQNPolicy,
    GreedyUserModelPolicy,
    Policy,
    PopularityPolicy,
    RandomPolicy,
    ScorePolicy,
    plan_playlist,
)
from spotrec.playlists.user_model import (
    UserModelData,
    evaluate_user_model,
    save_user_model,
    train_user_model,
)
from spotrec.tables import (
    DISCOVER_WEEKLY,
    MODEL_METRICS,
    SILVER_EVENTS,
    TRACK_FACTORS,
    TRACKS,
    USER_FACTORS,
    Storage,
    TableSpec,
)

log = logging.getLogger(__name__)

SESSION = "session"
Q_VALUE = "q_value"
PREDICTED_SKIP = "predicted_skip"
POLICY_VERSION = "policy_version"
CANDIDATE_IDS = "candidate_ids"
CANDIDATE_FEATURES = "candidate_features"
CANDIDATE_POPULARITY = "candidate_popularity"
CANDIDATE_SCORES = "candidate_scores"

_S, _I, _D = T.StringType(), T.IntegerType(), T.DoubleType()

RL_PLAYLISTS = TableSpec(
    "gold",
    "rl_playlists",
    T.StructType(
        [
            T.StructField(C.USER_ID, _S, False),
            T.StructField(SESSION, _S, False),
            T.StructField(C.POSITION, _I, False),
            T.StructField(C.TRACK_ID, _S, False),
            T.StructField(Q_VALUE, _D, False),
            T.StructField(PREDICTED_SKIP, _D, True),
            T.StructField(POLICY_VERSION, _S, False),
        ]
    ),
    keys=(C.USER_ID, SESSION, C.POSITION),
    produced_by="playlists",
    description="Per user and session: the AH-DQN's playlist (1-based positions) with Q value and the user "
    "model's P(skip) per slot; one session's rows are replaced as a whole.",
    column_docs={
        SESSION: "Key of the generated session (default: the run's UTC date); pools are drawn per key.",
        C.POSITION: "1-based slot in the playlist.",
        Q_VALUE: "The agent's Q(state, track) when it chose the track: expected discounted session reward.",
        PREDICTED_SKIP: "The user model's P(skip) for the track at that slot, along the most likely path.",
        POLICY_VERSION: "Content hash of the AH-DQN checkpoint (file <artifacts>/playlists/policy/<v>.pt).",
    },
)

USER_MODEL_METRICS = TableSpec(
    "gold",
    "user_model_metrics",
    T.StructType(
        [
            T.StructField(C.MODEL_VERSION, _S, False),
            T.StructField("head", _S, False),
            T.StructField("predictor", _S, False),
            T.StructField(C.METRIC, _S, False),
            T.StructField("bin", _I, True),
            T.StructField(C.VALUE, _D, True),
            T.StructField("created_at", T.TimestampType(), False),
        ]
    ),
    keys=(C.MODEL_VERSION, "head", "predictor", C.METRIC, "bin"),
    produced_by="playlists",
    description="Held-out quality of each user model version per head (completed / skipped / listened): AUC "
    "and log-loss of the model, the global-rate and track-rate baselines and (synthetic world) the truth; "
    "calibration bins (count, mean predicted, observed, true).",
    column_docs={
        C.MODEL_VERSION: "Content hash of the user model checkpoint (<artifacts>/playlists/user_model/<v>.pt).",
        "head": "completed | skipped | listened (played more than listen_threshold_s).",
        "predictor": "user_model | global_rate | track_rate (the track's smoothed training rate) | truth.",
        C.METRIC: "auc | log_loss | n | calib_count | calib_mean_pred | calib_observed | calib_true.",
        "bin": "Calibration bin (equal width over predicted probability); null for scalar metrics.",
    },
)

PLAYLIST_SCHEMA = RL_PLAYLISTS.schema


# --- candidate pools ------------------------------------------------------------------------------


def candidate_pools(
    users: DataFrame,
    catalogue: DataFrame,
    cfg: PlaylistRLConfig,
    session_keys: list[str],
    scores: DataFrame | None = None,
) -> DataFrame:
    """Per (user, session key): up to ``pool_size`` distinct candidates with features, popularity and score.

    The user's top ``pool_from_scores`` tracks by ``scores`` come first (the same for every session);
    the rest is a draw from the catalogue seeded by (user, session key, ``cfg.seed``), so pools differ per
    user and per session. Runs on executors: each user draws ``2 * pool_size`` track numbers (to survive
    duplicates) instead of joining with the whole catalogue.

    Args:
        users: ``user_id`` rows.
        catalogue: ``track_id``, ``track_features`` (float array), ``popularity`` per track.
        cfg: pool size and seed.
        session_keys: one pool per user and key (e.g. ``train-0``, or the generation date).
        scores: optional ``user_id, track_id, score`` (e.g. ALS scores); unscored candidates get null.

    Returns:
        user_id, session, candidate_ids, candidate_features, candidate_popularity, candidate_scores,
        the arrays in pool order.
    """
    keys = F.explode(F.array(*[F.lit(k) for k in session_keys])).alias(SESSION)
    per_session = users.select(C.USER_ID).distinct().select(C.USER_ID, keys)
    indexed = catalogue.select(
        C.TRACK_ID, TRACK_FEATURES, "popularity", (F.row_number().over(Window.orderBy(C.TRACK_ID)) - 1).alias("_idx")
    )
    n_tracks = catalogue.agg(F.count(F.lit(1)).alias("_n"))
    draws = (
        per_session.select("*", F.explode(F.sequence(F.lit(0), F.lit(2 * cfg.pool_size - 1))).alias("_draw"))
        .crossJoin(n_tracks)
        .select(
            C.USER_ID,
            SESSION,
            (F.lit(1_000_000) + F.col("_draw")).alias("_priority"),
            F.pmod(F.xxhash64(C.USER_ID, SESSION, "_draw", F.lit(cfg.seed)), F.col("_n")).alias("_idx"),
        )
        .join(indexed, "_idx")
        .drop("_idx")
    )
    candidates = draws
    if scores is not None:
        top = scores.select(
            C.USER_ID,
            C.TRACK_ID,
            F.row_number().over(Window.partitionBy(C.USER_ID).orderBy(F.desc(C.SCORE), C.TRACK_ID)).alias("_priority"),
        ).where(F.col("_priority") <= cfg.pool_from_scores)
        scored = per_session.join(top, C.USER_ID).join(indexed.drop("_idx"), C.TRACK_ID)
        candidates = draws.unionByName(scored.select(*draws.columns))
        candidates = candidates.join(scores.select(C.USER_ID, C.TRACK_ID, C.SCORE), [C.USER_ID, C.TRACK_ID], "left")
    else:
        candidates = candidates.withColumn(C.SCORE, F.lit(None).cast("double"))
    first = Window.partitionBy(C.USER_ID, SESSION, C.TRACK_ID).orderBy("_priority")
    in_pool = Window.partitionBy(C.USER_ID, SESSION).orderBy("_priority", C.TRACK_ID)
    kept = (
        candidates.withColumn("_dup", F.row_number().over(first))
        .where(F.col("_dup") == 1)
        .withColumn("_slot", F.row_number().over(in_pool))
        .where(F.col("_slot") <= cfg.pool_size)
    )
    pooled = kept.groupBy(C.USER_ID, SESSION).agg(
        F.array_sort(
            F.collect_list(
                F.struct(
                    "_slot", C.TRACK_ID, TRACK_FEATURES, "popularity", F.col(C.SCORE).cast("double").alias(C.SCORE)
                )
            )
        ).alias("_c")
    )
    return pooled.select(
        C.USER_ID,
        SESSION,
        F.col(f"_c.{C.TRACK_ID}").alias(CANDIDATE_IDS),
        F.col(f"_c.{TRACK_FEATURES}").alias(CANDIDATE_FEATURES),
        F.col("_c.popularity").alias(CANDIDATE_POPULARITY),
        F.col(f"_c.{C.SCORE}").alias(CANDIDATE_SCORES),
    )


def als_vectors(storage: Storage) -> tuple[DataFrame, DataFrame, int] | None:
    """ALS user and track factors as ``(user_id | track_id, vector)`` frames and their rank, if both exist.

    Appended to the user and track blocks they let the user model see taste affinity (the factors' dot
    product) directly. The factors were fit on all interactions, held-out sessions included: a mild leak
    that makes the held-out metrics slightly optimistic.
    """
    if not (storage.exists(USER_FACTORS) and storage.exists(TRACK_FACTORS)):
        return None
    users = storage.read(USER_FACTORS).select(C.USER_ID, F.col("features").alias(VECTOR))
    tracks = storage.read(TRACK_FACTORS).select(C.TRACK_ID, F.col("features").alias(VECTOR))
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


def session_spec(row: dict[str, object]) -> SessionSpec:
    """A :class:`SessionSpec` from one joined (pool, user context) row; unscored candidates rank last."""
    scores = np.array([np.nan if s is None else s for s in row[CANDIDATE_SCORES]], dtype=np.float64)  # type: ignore[attr-defined]
    finite = scores[np.isfinite(scores)]
    scores = np.where(np.isfinite(scores), scores, (finite.min() - 1.0) if len(finite) else 0.0)
    return SessionSpec(
        user_id=str(row[C.USER_ID]),
        user_features=np.asarray(row[USER_FEATURES], dtype=np.float32),
        track_ids=np.asarray(row[CANDIDATE_IDS]),
        track_features=np.stack(list(row[CANDIDATE_FEATURES])).astype(np.float32),  # type: ignore[call-overload]
        popularity=np.asarray(row[CANDIDATE_POPULARITY], dtype=np.float64),
        scores=scores,
    )


# --- playlist generation on executors -------------------------------------------------------------


def playlist_generator(policy_file: str) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The ``mapInPandas`` function: load the shipped policy once per task, plan each user's playlist."""
    name = Path(policy_file).name

    def generate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import SparkFiles

        torch.set_num_threads(1)
        shipped = Path(SparkFiles.get(name))
        agent, user_model = load_policy(shipped if shipped.exists() else policy_file)
        for pdf in batches:
            out = []
            for row in pdf.to_dict("records"):
                spec = session_spec(row)
                for pos, slot in enumerate(plan_playlist(agent.q, user_model, spec, agent.cfg), start=1):
                    out.append(
                        (
                            spec.user_id,
                            row[SESSION],
                            pos,
                            str(spec.track_ids[slot.index]),
                            slot.q_value,
                            None if np.isnan(slot.predicted_skip) else slot.predicted_skip,
                            agent.version,
                        )
                    )
            yield pd.DataFrame(out, columns=PLAYLIST_SCHEMA.fieldNames())

    return generate


def generate_playlists(spark: SparkSession, sessions: DataFrame, policy_file: str) -> DataFrame:
    """``gold.rl_playlists`` rows for every (user, session) row of ``sessions`` (pools joined with context).

    The checkpoint is shipped with ``SparkContext.addFile``; executors read it with ``SparkFiles.get``.
    """
    spark.sparkContext.addFile(policy_file)
    return sessions.mapInPandas(playlist_generator(policy_file), PLAYLIST_SCHEMA)


# --- the step -------------------------------------------------------------------------------------


@dataclass
class PlaylistRunResult:
    user_model_version: str
    policy_version: str
    policy_path: str
    evaluation: pd.DataFrame
    user_model_metrics: pd.DataFrame
    playlists_written: int


def _split_data(rows: DataFrame, cfg: PlaylistRLConfig) -> dict[str, pd.DataFrame]:
    cols = [C.USER_ID, C.TRACK_ID, C.POSITION, USER_FEATURES, TRACK_FEATURES, CONTEXT_FEATURES, *LABELS, SPLIT]
    selected = rows.select(*cols).cache()  # counted, then collected: compute the feature plan once
    try:
        total = selected.count()
        sample = selected
        if total > cfg.max_training_rows:
            sample = selected.sample(fraction=cfg.max_training_rows / total, seed=cfg.seed)
        pdf: pd.DataFrame = sample.toPandas()
    finally:
        selected.unpersist()
    return {name: pdf[pdf[SPLIT] == name].reset_index(drop=True) for name in ("train", "validation", "test")}


def _ground_truth(cfg: Config) -> TrueResponse | None:
    from spotrec.synth.truth import load_ground_truth

    try:
        return TrueResponse(load_ground_truth(f"{cfg.storage.artifacts_dir.rstrip('/')}/ground_truth"))
    except FileNotFoundError:
        log.info("no synthetic ground truth: evaluating in the learned simulator only")
        return None


def _true_probs(truth: TrueResponse, test: pd.DataFrame) -> np.ndarray | None:
    """(n, 3) true probabilities of the test rows, or None when some user / track is not in the truth."""
    skips = np.rint(np.stack(test[CONTEXT_FEATURES].to_numpy())[:, 1] * SKIP_RUN_CAP)
    try:
        p = truth.batch(test[C.USER_ID].tolist(), test[C.TRACK_ID].tolist(), test[C.POSITION].to_numpy(), skips)
    except KeyError as exc:
        log.warning("test rows outside the ground truth (%s): no true-probability calibration", exc)
        return None
    return np.stack([p.p_complete, p.p_skip, p.p_listen], axis=1)


def _collect_sessions(pools: DataFrame, context: DataFrame) -> list[SessionSpec]:
    rows: pd.DataFrame = pools.join(context, C.USER_ID).orderBy(C.USER_ID, SESSION).toPandas()
    return [session_spec(r) for r in rows.to_dict("records")]


def run_playlists(
    spark: SparkSession,
    storage: Storage,
    cfg: Config,
    rl: PlaylistRLConfig,
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
    artifacts = Path(cfg.storage.artifacts_dir) / "playlists"
    events, tracks = storage.read(SILVER_EVENTS), storage.read(TRACKS)
    vectors = als_vectors(storage) if rl.use_als_factors else None
    user_vecs, track_vecs, dim = vectors if vectors is not None else (None, None, 0)
    layout = FeatureLayout(user_vector_dim=dim, track_vector_dim=dim)
    log.info("user model inputs: %s", layout.to_dict())

    # 1-2. user model
    rows = training_rows(
        events,
        tracks,
        rl,
        user_vectors=user_vecs,
        user_vector_dim=dim,
        track_vectors=track_vecs,
        track_vector_dim=dim,
    )
    rows = assign_split(pack_features(rows, layout), rl)
    splits = _split_data(rows, rl)
    data = {k: UserModelData.from_pandas(v) for k, v in splits.items()}
    log.info("user model rows: %s", {k: len(v) for k, v in data.items()})
    user_model = train_user_model(data["train"], data["validation"], layout, rl)
    save_user_model(user_model, artifacts / "user_model")
    truth = _ground_truth(cfg)
    true_probs = _true_probs(truth, splits["test"]) if truth is not None and len(splits["test"]) else None
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
    train_sessions = _collect_sessions(
        candidate_pools(sample_users, catalogue, rl, [f"train-{i}" for i in range(4)], scores), context
    )
    env = PlaylistEnv(train_sessions, LearnedResponse(user_model), rl, layout)
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
    eval_sessions = _collect_sessions(candidate_pools(eval_users, catalogue, rl, eval_keys, scores), context)
    eval_sessions = eval_sessions[: rl.eval_sessions]
    log.info("evaluating on %d sessions (%d per user)", len(eval_sessions), per_user)
    policies: list[Policy] = [RandomPolicy(), PopularityPolicy()]
    if scores is not None:
        policies.append(ScorePolicy())
    policies += [GreedyUserModelPolicy(LearnedResponse(user_model), rl), DQNPolicy(agent.q)]
    worlds: dict[str, ResponseModel] = {"learned_sim": LearnedResponse(user_model)}
    if truth is not None:
        worlds["true_world"] = truth
    evaluation = compare_policies(policies, worlds, eval_sessions, rl, layout)
    for rec in evaluation.to_dict("records"):
        log.info(
            "eval/%s/%s/%s = %.4f [%.4f, %.4f]",
            rec["world"],
            rec["policy"],
            rec["metric"],
            rec["mean"],
            rec["ci_low"],
            rec["ci_high"],
        )
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
    )


__all__ = [
    "RL_PLAYLISTS",
    "USER_MODEL_METRICS",
    "PlaylistRunResult",
    "als_vectors",
    "candidate_pools",
    "discover_weekly_scores",
    "generate_playlists",
    "run_playlists",
    "session_spec",
]
