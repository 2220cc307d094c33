"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) on Spark MLlib, behind the Recommender protocol.

MLlib's ALS with ``implicitPrefs=True`` treats each ``confidence`` r as preference p = 1 if r > 0 (else 0)
with confidence c = 1 + alpha * |r|, and scales ``regParam`` by the number of ratings of each user / track
("ALS-WR"). Recommendations are scored with :func:`spotrec.weekly.topn.top_n_unheard` (exact, blocked,
heard tracks excluded) rather than ``recommendForAllUsers`` (which cannot exclude).

Reproducibility: the ratings are hash-partitioned by ``user_idx`` into ``num_blocks`` partitions and sorted
within each, so a fixed seed gives the same factors run after run (up to the floating-point summation order
of shuffled blocks on a multi-node cluster).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.config import WeeklyConfig
from spotrec.errors import SchemaMismatchError
from spotrec.tables import MODEL_METRICS, conform
from spotrec.weekly.topn import FEATURES, top_n_unheard

if TYPE_CHECKING:
    from spotrec.weekly.cg import CgRecommender

MetricsFn = Callable[[DataFrame, DataFrame, int], dict[str, float]]
"""``(recs, relevant, k) -> {metric: value}``, e.g. ``spotrec.evaluation.metrics.ranking_metrics``."""

_REQUIRED = (C.USER_ID, C.TRACK_ID, C.USER_IDX, C.TRACK_IDX, C.CONFIDENCE)


def _require(df: DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SchemaMismatchError(f"{what}: missing column(s) {missing}; got {df.columns}")


def deterministic_ratings(interactions: DataFrame, partitions: int) -> DataFrame:
    """The ALS input ``(user_idx, track_idx, confidence)``, laid out identically on every run.

    Hash partitioning by ``user_idx`` and a sort within partitions fix which task sees which rating in which
    order, so the seeded random initialisation and the normal-equation sums repeat exactly. Nothing is
    sampled after the repartition (a sample over a reshuffled frame is what makes ALS runs drift).
    """
    return (
        interactions.select(
            F.col(C.USER_IDX).cast("int").alias(C.USER_IDX),
            F.col(C.TRACK_IDX).cast("int").alias(C.TRACK_IDX),
            F.col(C.CONFIDENCE).cast("float").alias(C.CONFIDENCE),
        )
        .repartition(partitions, C.USER_IDX)
        .sortWithinPartitions(C.USER_IDX, C.TRACK_IDX)
    )


def model_version(cfg: WeeklyConfig, input_version: str = "") -> str:
    """A readable, content-addressed version: ``als-r{rank}-l{reg}-a{alpha}-{hash}``.

    The hash covers every fitting parameter and ``input_version`` (e.g. the Delta version of
    gold.interactions), so equal versions mean equal factors.
    """
    params = {
        "rank": cfg.rank,
        "reg_param": cfg.reg_param,
        "alpha": cfg.alpha,
        "max_iter": cfg.max_iter,
        "num_blocks": cfg.num_blocks,
        "seed": cfg.seed,
        "input": input_version,
    }
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return f"als-r{cfg.rank}-l{cfg.reg_param:g}-a{cfg.alpha:g}-{digest}"


class AlsRecommender:
    """MLlib implicit ALS: fit on gold.interactions, recommend unheard tracks, expose the factor tables.

    Args:
        cfg: hyperparameters (rank, reg_param, alpha, max_iter, num_blocks, checkpoint_interval, seed).
        checkpoint_dir: set as the SparkContext checkpoint directory before fitting, so the iteration
            lineage is cut every ``checkpoint_interval`` iterations; None keeps the context's current one.
        block_size: users per matmul in :func:`top_n_unheard`.
        input_version: identifies the training data in the model version (e.g. gold.interactions' Delta
            version); may also be given to :meth:`fit`.
    """

    name = "als"

    def __init__(
        self,
        cfg: WeeklyConfig,
        checkpoint_dir: str | None = None,
        *,
        block_size: int = 1024,
        input_version: str = "",
    ) -> None:
        self.cfg = cfg
        self.checkpoint_dir = checkpoint_dir
        self.block_size = block_size
        self.input_version = input_version
        self._model: ALSModel | None = None
        self._users: DataFrame | None = None
        self._tracks: DataFrame | None = None

    def estimator(self) -> ALS:
        """The configured (unfitted) MLlib estimator."""
        cfg = self.cfg
        return ALS(
            rank=cfg.rank,
            maxIter=cfg.max_iter,
            regParam=cfg.reg_param,
            alpha=cfg.alpha,
            implicitPrefs=True,
            nonnegative=False,
            numUserBlocks=cfg.num_blocks,
            numItemBlocks=cfg.num_blocks,
            checkpointInterval=cfg.checkpoint_interval,
            intermediateStorageLevel=cfg.intermediate_storage_level,
            finalStorageLevel=cfg.final_storage_level,
            seed=cfg.seed,
            coldStartStrategy="drop",
            userCol=C.USER_IDX,
            itemCol=C.TRACK_IDX,
            ratingCol=C.CONFIDENCE,
        )

    @property
    def model_version(self) -> str:
        return model_version(self.cfg, self.input_version)

    @property
    def model(self) -> ALSModel:
        if self._model is None:
            raise RuntimeError("AlsRecommender is not fitted: call fit(interactions) first")
        return self._model

    def fit(self, interactions: DataFrame, input_version: str | None = None) -> AlsRecommender:
        """Train on gold.interactions-shaped rows (user_id, track_id, user_idx, track_idx, confidence)."""
        _require(interactions, _REQUIRED, "ALS input")
        if input_version is not None:
            self.input_version = input_version
        spark = interactions.sparkSession
        if self.checkpoint_dir:
            spark.sparkContext.setCheckpointDir(self.checkpoint_dir)
        ratings = deterministic_ratings(interactions, self.cfg.num_blocks).cache()
        try:
            ratings.count()
            self._model = self.estimator().fit(ratings)
        finally:
            ratings.unpersist()
        self._users = interactions.select(F.col(C.USER_ID), F.col(C.USER_IDX).cast("int")).distinct()
        self._tracks = interactions.select(F.col(C.TRACK_ID), F.col(C.TRACK_IDX).cast("int")).distinct()
        return self

    def _id_maps(self) -> tuple[DataFrame, DataFrame]:
        if self._users is None or self._tracks is None:
            raise RuntimeError("AlsRecommender is not fitted: call fit(interactions) first")
        return self._users, self._tracks

    def user_factors_frame(self) -> DataFrame:
        """user_idx, features (MLlib's userFactors under the table's column names)."""
        return self.model.userFactors.select(F.col("id").alias(C.USER_IDX), FEATURES)

    def track_factors_frame(self) -> DataFrame:
        """track_idx, features."""
        return self.model.itemFactors.select(F.col("id").alias(C.TRACK_IDX), FEATURES)

    def user_factors(self) -> DataFrame:
        """gold.user_factors: user_idx, user_id, features, model_version."""
        return factor_table(self.user_factors_frame(), self._id_maps()[0], C.USER_IDX, self.model_version)

    def track_factors(self) -> DataFrame:
        """gold.track_factors: track_idx, track_id, features, model_version."""
        return factor_table(self.track_factors_frame(), self._id_maps()[1], C.TRACK_IDX, self.model_version)

    def recommend(self, users: DataFrame, n: int, exclude: DataFrame | None = None) -> DataFrame:
        """Top ``n`` tracks per user (``users.user_id``) by predicted preference, excluded pairs never shown.

        Users unseen in training get nothing (cold start). Returns user_id, track_id, rank, score.
        """
        user_map, track_map = self._id_maps()
        return recommend_from_factors(
            self.user_factors_frame(),
            self.track_factors_frame(),
            user_map,
            track_map,
            users,
            n,
            exclude,
            self.block_size,
        )


def factor_table(factors: DataFrame, id_map: DataFrame, key: str, version: str) -> DataFrame:
    """gold.user_factors / gold.track_factors rows of any solver: ``factors`` (``key``, features) joined with
    the (string id, ``key``) pairs seen in training, stamped with the model version."""
    return factors.join(id_map, key).withColumn(C.MODEL_VERSION, F.lit(version))


def recommend_from_factors(
    user_factors: DataFrame,
    track_factors: DataFrame,
    user_map: DataFrame,
    track_map: DataFrame,
    users: DataFrame,
    n: int,
    exclude: DataFrame | None,
    block_size: int,
) -> DataFrame:
    """The Recommender contract over any factor pair (``user_idx|track_idx, features``), for every solver.

    ``user_map`` / ``track_map`` are the (string id, index) pairs seen in training; ``exclude`` may carry
    either string ids or indexes. Returns user_id, track_id, rank, score.
    """
    _require(users, [C.USER_ID], "users")
    wanted = users.select(C.USER_ID).distinct().join(user_map, C.USER_ID)
    factors = user_factors.join(wanted.select(C.USER_IDX), C.USER_IDX)
    heard = None
    if exclude is not None:
        if C.USER_IDX in exclude.columns and C.TRACK_IDX in exclude.columns:
            heard = exclude.select(C.USER_IDX, C.TRACK_IDX)
        else:
            _require(exclude, [C.USER_ID, C.TRACK_ID], "exclude")
            heard = (
                exclude.select(C.USER_ID, C.TRACK_ID)
                .join(user_map, C.USER_ID)
                .join(track_map, C.TRACK_ID)
                .select(C.USER_IDX, C.TRACK_IDX)
            )
    top = top_n_unheard(factors, track_factors, heard, n, block_size)
    return top.join(user_map, C.USER_IDX).join(track_map, C.TRACK_IDX).select(C.USER_ID, C.TRACK_ID, C.RANK, C.SCORE)


def release(model: object) -> None:
    """Free a fitted model's cached data where it holds any (the CG solver's packed chunks and broadcast
    factors); for a model its caller will not use again."""
    unpersist = getattr(model, "unpersist", None)
    if unpersist is not None:
        unpersist()


def make_recommender(
    cfg: WeeklyConfig,
    checkpoint_dir: str | None = None,
    *,
    block_size: int = 1024,
    input_version: str = "",
) -> AlsRecommender | CgRecommender:
    """The implicit-ALS recommender ``cfg.solver`` names: ``mllib`` (:class:`AlsRecommender`, exact Cholesky
    solves in MLlib) or ``cg`` (:class:`spotrec.weekly.cg.CgRecommender`, conjugate-gradient steps in numpy).
    Both fit the same objective (same confidence, same ALS-WR regularisation) behind the same interface."""
    if cfg.solver == "cg":
        from spotrec.weekly.cg import CgRecommender

        return CgRecommender(cfg, checkpoint_dir, block_size=block_size, input_version=input_version)
    if cfg.solver == "mllib":
        return AlsRecommender(cfg, checkpoint_dir, block_size=block_size, input_version=input_version)
    raise ValueError(f"unknown ALS solver {cfg.solver!r}; expected 'mllib' or 'cg'")


# -- tuning ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One hyperparameter combination evaluated on the validation split."""

    rank: int
    reg_param: float
    alpha: float
    model_version: str
    fit_seconds: float
    k: int
    """Cut-off the metrics were computed at."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Whatever the metrics function returned (e.g. ``ndcg``, ``map``, ... or ``name@k`` keys)."""


def default_grid(cfg: WeeklyConfig) -> list[dict[str, Any]]:
    """Every (rank, reg_param, alpha) combination of the config's ``tune_*`` lists."""
    return [
        {"rank": r, "reg_param": lam, "alpha": a}
        for r, lam, a in itertools.product(cfg.tune_ranks, cfg.tune_reg_params, cfg.tune_alphas)
    ]


def _ranking_metrics() -> MetricsFn:
    from spotrec.evaluation.metrics import ranking_metrics

    return ranking_metrics


def tune(
    train: DataFrame,
    relevant: DataFrame,
    grid: Iterable[dict[str, Any]] | None,
    k: int,
    *,
    cfg: WeeklyConfig | None = None,
    checkpoint_dir: str | None = None,
    metrics_fn: MetricsFn | None = None,
    input_version: str = "",
) -> list[Trial]:
    """Fit one ALS per grid point on ``train`` and score its top-``k`` unheard tracks against ``relevant``.

    Args:
        train: gold.interactions-shaped training rows; also the "heard" set excluded from recommendations.
        relevant: (user_id, track_id) validation items the user had not heard in train.
        grid: dicts overriding WeeklyConfig fields (``rank``, ``reg_param``, ``alpha``, ...); None: default_grid.
        k: cut-off of the ranking metrics.
        cfg: base configuration for every other field.
        checkpoint_dir: see :class:`AlsRecommender`.
        metrics_fn: ``(recs, relevant, k) -> dict``; default ``spotrec.evaluation.metrics.ranking_metrics``.
        input_version: recorded in each trial's model version.

    Returns:
        One :class:`Trial` per grid point, in grid order (see :func:`best_trial`, :func:`trials_frame`).
    """
    base = cfg or WeeklyConfig()
    points = list(default_grid(base) if grid is None else grid)
    score = metrics_fn or _ranking_metrics()
    users = relevant.select(C.USER_ID).distinct().cache()
    trials: list[Trial] = []
    try:
        for point in points:
            trial_cfg = base.model_copy(update=point)
            rec = make_recommender(trial_cfg, checkpoint_dir, input_version=input_version)
            start = time.perf_counter()
            rec.fit(train)
            fit_seconds = time.perf_counter() - start
            recs = rec.recommend(users, k, exclude=train).cache()
            try:
                metrics = {name: float(v) for name, v in score(recs, relevant, k).items()}
            finally:
                recs.unpersist()
                release(rec)  # a trial's model is not reused
            trials.append(
                Trial(
                    trial_cfg.rank,
                    trial_cfg.reg_param,
                    trial_cfg.alpha,
                    rec.model_version,
                    fit_seconds,
                    k,
                    metrics,
                )
            )
    finally:
        users.unpersist()
    return trials


def _metric_value(trial: Trial, metric: str) -> float:
    for name, value in trial.metrics.items():
        if name == metric or name.split("@")[0] == metric:
            return value
    raise KeyError(f"metric {metric!r} not among {sorted(trial.metrics)}")


def best_trial(trials: Sequence[Trial], metric: str = "ndcg") -> Trial:
    """The trial with the highest ``metric`` (``ndcg`` matches ``ndcg@10``); the earliest wins ties."""
    if not trials:
        raise ValueError("no trials to choose from")
    return max(trials, key=lambda t: (_metric_value(t, metric), -trials.index(t)))


def trials_frame(spark: SparkSession, trials: Sequence[Trial], *, run_id: str, dataset: str) -> DataFrame:
    """Every trial's metrics (plus ``fit_seconds``) as ops.model_metrics rows, model ``als``.

    Metrics are stored with the trial's ``k`` (a key ``name@k`` is split into metric ``name`` and its own
    ``k``); ``fit_seconds`` has no ``k``. The hyperparameters are readable in each row's model_version.
    """
    now = F.current_timestamp()
    rows: list[tuple[str, str, int | None, float]] = []
    for t in trials:
        rows.append((t.model_version, "fit_seconds", None, float(t.fit_seconds)))
        for name, value in t.metrics.items():
            metric, _, k = name.partition("@")
            rows.append((t.model_version, metric, int(k) if k.isdigit() else t.k, float(value)))
    schema = T.StructType(
        [
            T.StructField(C.MODEL_VERSION, T.StringType()),
            T.StructField(C.METRIC, T.StringType()),
            T.StructField(C.K, T.IntegerType()),
            T.StructField(C.VALUE, T.DoubleType()),
        ]
    )
    df = (
        spark.createDataFrame(rows, schema)
        .withColumn(C.RUN_ID, F.lit(run_id))
        .withColumn(C.MODEL, F.lit("als"))
        .withColumn(C.DATASET, F.lit(dataset))
        .withColumn(C.CREATED_AT, now)
    )
    return conform(df, MODEL_METRICS)


__all__ = [
    "AlsRecommender",
    "Trial",
    "best_trial",
    "default_grid",
    "deterministic_ratings",
    "factor_table",
    "make_recommender",
    "model_version",
    "recommend_from_factors",
    "trials_frame",
    "tune",
]
