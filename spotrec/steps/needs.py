"""What each step needs from the data, so the pipeline runs on whatever a user has.

A newcomer's data is one listener's export, play counts without timestamps, or a mix. Each step checks
here what it needs and either runs or skips with ONE line saying why (never a JVM stack trace), and
the ALS config is made numerically safe for tiny data before a recommender is built.

Why the ALS adjustment: with implicit feedback MLlib solves, per item, ``(X^T C X + lambda n_i I) y = ...``
with ``n_i`` the item's count of positive ratings (ALS-WR). An item heard only as skips has ``n_i = 0``,
so its system is regularised by nothing and is singular whenever the rank exceeds the number of
listeners (``X^T C X`` has rank at most that): LAPACK ``dppsv`` fails. Capping the rank at the number of
listeners (and tracks) removes that case; the floor on ``reg_param`` keeps the others well conditioned.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import WeeklyConfig
from spotrec.steps.base import StepContext, StepResult
from spotrec.storage import Storage
from spotrec.tables import TableSpec

MIN_LISTENERS = 2
"""Collaborative filtering learns from other listeners: fewer than this and the weekly, evaluate and
rnn steps skip (a single export still gets its tables from ingest and matrix)."""

MIN_REG_PARAM = 0.01
"""The floor put under ``weekly.reg_param`` (see the module docstring)."""


def skip(ctx: StepContext, step: str, why: str) -> StepResult:
    """Report the one line saying why ``step`` does not run, and return its (empty) result."""
    ctx.say(f"[{step}] skipped: {why}")
    return ctx.result(step)


def listeners(storage: Storage, spec: TableSpec) -> int:
    """Distinct users in a table (0 when it does not exist); one aggregate row reaches the driver."""
    if not storage.exists(spec):
        return 0
    row = storage.read(spec).agg(F.countDistinct(C.USER_ID)).first()
    return int(row[0]) if row else 0


def too_few_listeners(n: int) -> str | None:
    """Why ``n`` listeners cannot be served by collaborative filtering, or None when they can."""
    if n >= MIN_LISTENERS:
        return None
    noun = "listener is" if n == 1 else "listeners are"
    return f"{n} {noun} too few for collaborative filtering; need at least {MIN_LISTENERS}"


def missing(storage: Storage, specs: list[TableSpec]) -> list[str]:
    """The names of the tables in ``specs`` that do not exist."""
    return [s.full_name for s in specs if not storage.exists(s)]


def safe_als_config(
    cfg: WeeklyConfig, n_users: int, n_tracks: int, say: Callable[[str], None], step: str
) -> WeeklyConfig:
    """``cfg`` with the rank capped by the data and ``reg_param`` floored (see the module docstring)."""
    rank = max(1, min(cfg.rank, n_users, n_tracks))
    reg = max(cfg.reg_param, MIN_REG_PARAM)
    if rank == cfg.rank and reg == cfg.reg_param:
        return cfg
    say(
        f"[{step}] ALS rank {cfg.rank} -> {rank}, reg_param {cfg.reg_param} -> {reg} for {n_users:,} listeners "
        f"and {n_tracks:,} tracks (a rank above the listener count makes skip-only tracks' systems singular)"
    )
    return cfg.model_copy(update={"rank": rank, "reg_param": reg})


def data_size(interactions: DataFrame) -> tuple[int, int]:
    """(users, tracks) with a positive confidence in interactions, minus one each, in one aggregate.

    Only those get a nonzero factor and regularisation under ALS-WR, so they bound the rank that keeps
    every normal-equation system positive definite.
    """
    pos = F.when(F.col(C.CONFIDENCE) > 0, F.col(C.USER_ID))
    pos_t = F.when(F.col(C.CONFIDENCE) > 0, F.col(C.TRACK_ID))
    row = interactions.agg(F.countDistinct(pos), F.countDistinct(pos_t)).first()
    return (max(int(row[0]) - 1, 1), max(int(row[1]) - 1, 1)) if row else (1, 1)


def singular(exc: BaseException) -> bool:
    """Whether a Spark error is MLlib's SingularMatrixException (ALS on data it cannot factor)."""
    return "SingularMatrixException" in str(exc)
