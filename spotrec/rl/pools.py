"""Candidate pools, session specs and playlist generation of the RL system (pure Spark / numpy).

Pools are drawn per user and session on executors; the driver collects only bounded samples (the user
model's training rows up to ``rl.max_training_rows``, the training and evaluation sessions of
``rl.training_users`` / ``rl.eval_sessions`` users); every user's playlist is generated on executors
(``mapInPandas``). The ``rl`` step (:mod:`spotrec.steps.rl`) wires them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from spotrec import columns as C
from spotrec.columns import CANDIDATE_FEATURES, CANDIDATE_IDS, CANDIDATE_POPULARITY, CANDIDATE_SCORES, SESSION
from spotrec.config import RlConfig
from spotrec.features.ordinal import global_row_number
from spotrec.rl.agent import load_policy
from spotrec.rl.env import SessionSpec, TrueResponse
from spotrec.rl.features import (
    CONTEXT_FEATURES,
    LABEL_ENDED,
    LABELS,
    SKIP_RUN_CAP,
    SPLIT,
    TRACK_FEATURES,
    USER_FEATURES,
)
from spotrec.rl.policies import (
    plan_playlist,
)
from spotrec.tables import RL_PLAYLISTS

log = logging.getLogger(__name__)


# --- candidate pools ------------------------------------------------------------------------------


def candidate_pools(
    users: DataFrame,
    catalogue: DataFrame,
    cfg: RlConfig,
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
    # Track numbers 0.. in id order by a range-partitioned sort (no single-partition window).
    indexed = global_row_number(catalogue.select(C.TRACK_ID, TRACK_FEATURES, "popularity"), [C.TRACK_ID], "_idx")
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
                for pos, slot in enumerate(
                    plan_playlist(agent.q, user_model, spec, agent.cfg, agent.features), start=1
                ):
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
            yield pd.DataFrame(out, columns=RL_PLAYLISTS.schema.fieldNames())

    return generate


def generate_playlists(spark: SparkSession, sessions: DataFrame, policy_file: str) -> DataFrame:
    """``gold.rl_playlists`` rows for every (user, session) row of ``sessions`` (pools joined with context).

    The checkpoint is shipped with ``SparkContext.addFile``; executors read it with ``SparkFiles.get``.
    """
    spark.sparkContext.addFile(policy_file)
    return sessions.mapInPandas(playlist_generator(policy_file), RL_PLAYLISTS.schema)


# --- driver-side collections (bounded by the config) -----------------------------------------------


def collect_training_split(rows: DataFrame, cfg: RlConfig) -> dict[str, pd.DataFrame]:
    cols = [
        C.USER_ID,
        C.SESSION_ID,
        C.TRACK_ID,
        C.POSITION,
        USER_FEATURES,
        TRACK_FEATURES,
        CONTEXT_FEATURES,
        *LABELS,
        SPLIT,
    ]
    cols += [c for c in (LABEL_ENDED,) if c in rows.columns]  # the termination head's label
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


def true_probabilities(truth: TrueResponse, test: pd.DataFrame) -> np.ndarray | None:
    """(n, 3) true probabilities of the test rows, or None when some user / track is not in the truth."""
    skips = np.rint(np.stack(test[CONTEXT_FEATURES].to_numpy())[:, 1] * SKIP_RUN_CAP)
    try:
        p = truth.batch(test[C.USER_ID].tolist(), test[C.TRACK_ID].tolist(), test[C.POSITION].to_numpy(), skips)
    except KeyError as exc:
        log.warning("test rows outside the ground truth (%s): no true-probability calibration", exc)
        return None
    return np.stack([p.p_complete, p.p_skip, p.p_listen], axis=1)


def collect_sessions(pools: DataFrame, context: DataFrame, max_sessions: int | None = None) -> list[SessionSpec]:
    """The (user, session) pools as simulator sessions on the driver, in (user, session) order.

    Only bounded samples come here: the rl step passes pools for ``rl.training_users`` users x 4 training
    keys and for about ``rl.eval_sessions`` evaluation sessions (``ceil(eval_sessions / per_user)`` users x
    ``per_user`` keys), whatever the number of users; playlists for every user are generated on executors
    by :func:`generate_playlists`. ``max_sessions`` caps the collection (a distributed top-k, not a sort of
    everything) when the caller wants a hard bound.
    """
    ordered = pools.join(context, C.USER_ID).orderBy(C.USER_ID, SESSION)
    if max_sessions is not None:
        ordered = ordered.limit(max_sessions)
    rows: pd.DataFrame = ordered.toPandas()
    return [session_spec(r) for r in rows.to_dict("records")]
