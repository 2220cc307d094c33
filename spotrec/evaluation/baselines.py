"""Baselines every model must beat: global popularity and item-item co-occurrence.

Both implement :class:`spotrec.evaluation.recommender.InteractionRecommender` and run entirely as Spark joins
and windows, so they are evaluated by the same harness, on the same split, as ALS and the RNN methods. They
live here, not in a model package, because every system compares against them (``weekly`` and ``rnn`` do not
import each other).

- :class:`PopularityRecommender`: the tracks played by the most distinct training users, minus what the user
  has heard. The non-personalised floor.
- :class:`CooccurrenceRecommender`: "users who played X also played Y", item-item cosine similarity of binary
  play vectors (Sarwar et al. 2001; the idea behind Amazon's item-to-item CF). The classic personalised
  baseline that matrix factorisation is meant to beat on sparse data.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.evaluation.split import require_columns
from spotrec.features.ordinal import global_row_number

_NEIGHBOUR = "neighbour_id"


def _distinct_users(users: DataFrame) -> DataFrame:
    require_columns(users, (C.USER_ID,), "users")
    return users.select(C.USER_ID).where(F.col(C.USER_ID).isNotNull()).distinct()


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")


def _exclusions(exclude: DataFrame, users: DataFrame) -> DataFrame:
    require_columns(exclude, (C.USER_ID, C.TRACK_ID), "exclude")
    return exclude.select(C.USER_ID, C.TRACK_ID).distinct().join(users, [C.USER_ID], "left_semi")


def _top_n_per_user(candidates: DataFrame, n: int, order: list[F.Column]) -> DataFrame:
    """Keep each user's best ``n`` candidates (columns user_id, track_id, score) with a 1-based int rank."""
    window = Window.partitionBy(C.USER_ID).orderBy(*order)
    return (
        candidates.withColumn(C.RANK, F.row_number().over(window))
        .where(F.col(C.RANK) <= n)
        .select(
            C.USER_ID,
            C.TRACK_ID,
            F.col(C.RANK).cast("int").alias(C.RANK),
            F.col(C.SCORE).cast("double").alias(C.SCORE),
        )
    )


class PopularityRecommender:
    """Recommend the tracks with the most distinct training listeners, skipping each user's excluded tracks.

    ``score`` is the number of distinct training users who played the track. Ties go to the smaller
    ``track_id`` so output is deterministic.

    Scaling: a user's top ``n`` unexcluded tracks lie within the global top ``n + h_u`` (``h_u`` = the user's
    excluded catalogue tracks), so each user gets ``n + h_u`` rank slots that are equi-joined to the global
    popularity ranking; no users x catalogue cross product is formed.
    """

    def __init__(self, name: str = "popularity") -> None:
        """Args: name: Label in metric tables and reports."""
        self.name = name
        self._popularity: DataFrame | None = None

    def fit(self, interactions: DataFrame) -> PopularityRecommender:
        """Count distinct listeners per track (``user_id``, ``track_id`` are the only columns used)."""
        require_columns(interactions, (C.USER_ID, C.TRACK_ID), "interactions")
        self._popularity = (
            interactions.select(C.USER_ID, C.TRACK_ID)
            .distinct()
            .groupBy(C.TRACK_ID)
            .agg(F.count(F.lit(1)).cast("double").alias(C.SCORE))
        )
        return self

    @property
    def popularity(self) -> DataFrame:
        """``track_id, score`` (distinct training listeners) after :meth:`fit`."""
        if self._popularity is None:
            raise RuntimeError(f"{self.name}: call fit() before recommend()")
        return self._popularity

    def _ranked(self, limit: int) -> DataFrame:
        top = self.popularity.orderBy(F.desc(C.SCORE), F.asc(C.TRACK_ID)).limit(limit)
        # 1-based ranks by a range-partitioned sort: no single-partition window (see features.ordinal).
        return global_row_number(top, [F.desc(C.SCORE), F.asc(C.TRACK_ID)], "_pop_rank", start=1)

    def recommend(self, users: DataFrame, n: int, exclude: DataFrame | None = None) -> DataFrame:
        """Top ``n`` popular tracks per user in ``users``, never one of that user's ``exclude`` tracks.

        Returns:
            ``user_id, track_id, rank, score``.
        """
        _check_n(n)
        targets = _distinct_users(users)
        if exclude is None:
            top = self._ranked(n).select(C.TRACK_ID, F.col("_pop_rank").alias(C.RANK), C.SCORE)
            return targets.crossJoin(F.broadcast(top)).select(
                C.USER_ID, C.TRACK_ID, F.col(C.RANK).cast("int").alias(C.RANK), C.SCORE
            )
        # Only excluded tracks that are in the catalogue can push a popular track out of the top n.
        excluded = _exclusions(exclude, targets).join(self.popularity.select(C.TRACK_ID), [C.TRACK_ID], "left_semi")
        per_user = excluded.groupBy(C.USER_ID).agg(F.count(F.lit(1)).alias("_h"))
        row = per_user.agg(F.max("_h").alias("m")).first()
        max_h = int(row["m"]) if row is not None and row["m"] is not None else 0
        ranked = self._ranked(n + max_h)
        slots = (
            targets.join(per_user, [C.USER_ID], "left")
            .fillna(0, subset=["_h"])
            .select(C.USER_ID, F.explode(F.sequence(F.lit(1), F.col("_h") + n)).alias("_pop_rank"))
        )
        candidates = slots.join(F.broadcast(ranked), ["_pop_rank"]).join(excluded, [C.USER_ID, C.TRACK_ID], "left_anti")
        return _top_n_per_user(candidates, n, [F.col("_pop_rank")])


class CooccurrenceRecommender:
    """Item-item collaborative filtering on co-occurrence in users' histories, cosine-normalised.

    With U(x) the set of (capped-history) users who played x:

    - ``sim(x, y) = |U(x) ∩ U(y)| / sqrt(|U(x)| * |U(y)|)``, the cosine of the binary play vectors, so a
      blockbuster that co-occurs with everything does not dominate;
    - each track keeps its ``max_neighbours`` most similar tracks (pairs with fewer than ``min_cooccurrence``
      shared users are dropped);
    - ``score(u, y) = sum over x in history(u) of sim(x, y)``.

    Tractability: each user's history is capped at the ``max_history`` tracks with the highest confidence
    (or play rows when there is no ``confidence`` column), which bounds the pair self-join at
    ``users * max_history^2`` rows; the neighbour cap bounds the scoring join at
    ``users * max_history * max_neighbours``. Ties go to the smaller ``track_id``.

    Frames are lazy: :meth:`fit` defines them and :meth:`recommend` computes them.
    """

    def __init__(
        self,
        name: str = "cooccurrence",
        *,
        max_history: int = 200,
        max_neighbours: int = 50,
        min_cooccurrence: int = 1,
    ) -> None:
        """Args:
        name: Label in metric tables and reports.
        max_history: Most-listened tracks per user used for both similarity and scoring.
        max_neighbours: Most similar tracks kept per track.
        min_cooccurrence: Minimum shared users for a pair to count (raise it to drop one-off coincidences).
        """
        if max_history < 1 or max_neighbours < 1 or min_cooccurrence < 1:
            raise ValueError("max_history, max_neighbours and min_cooccurrence must all be >= 1")
        self.name = name
        self.max_history = max_history
        self.max_neighbours = max_neighbours
        self.min_cooccurrence = min_cooccurrence
        self._history: DataFrame | None = None
        self._neighbours: DataFrame | None = None

    def fit(self, interactions: DataFrame) -> CooccurrenceRecommender:
        """Build capped user histories and each track's top neighbours."""
        require_columns(interactions, (C.USER_ID, C.TRACK_ID), "interactions")
        weight = F.sum(C.CONFIDENCE) if C.CONFIDENCE in interactions.columns else F.count(F.lit(1))
        by_weight = Window.partitionBy(C.USER_ID).orderBy(F.desc("_w"), F.asc(C.TRACK_ID))
        history = (
            interactions.where(F.col(C.USER_ID).isNotNull() & F.col(C.TRACK_ID).isNotNull())
            .groupBy(C.USER_ID, C.TRACK_ID)
            .agg(weight.alias("_w"))
            .withColumn("_pos", F.row_number().over(by_weight))
            .where(F.col("_pos") <= self.max_history)
            .select(C.USER_ID, C.TRACK_ID)
        )
        listeners = history.groupBy(C.TRACK_ID).agg(F.count(F.lit(1)).alias("_n"))
        other = history.select(C.USER_ID, F.col(C.TRACK_ID).alias(_NEIGHBOUR))
        pairs = (
            history.join(other, [C.USER_ID])
            .where(F.col(C.TRACK_ID) != F.col(_NEIGHBOUR))
            .groupBy(C.TRACK_ID, _NEIGHBOUR)
            .agg(F.count(F.lit(1)).alias("_cooc"))
            .where(F.col("_cooc") >= self.min_cooccurrence)
        )
        similar = (
            pairs.join(listeners.withColumnRenamed("_n", "_nx"), [C.TRACK_ID])
            .join(listeners.select(F.col(C.TRACK_ID).alias(_NEIGHBOUR), F.col("_n").alias("_ny")), [_NEIGHBOUR])
            .withColumn("_sim", F.col("_cooc") / F.sqrt(F.col("_nx") * F.col("_ny")))
        )
        by_sim = Window.partitionBy(C.TRACK_ID).orderBy(F.desc("_sim"), F.asc(_NEIGHBOUR))
        self._neighbours = (
            similar.withColumn("_pos", F.row_number().over(by_sim))
            .where(F.col("_pos") <= self.max_neighbours)
            .select(C.TRACK_ID, _NEIGHBOUR, F.col("_sim").alias(C.SCORE))
        )
        self._history = history
        return self

    @property
    def neighbours(self) -> DataFrame:
        """``track_id, neighbour_id, score`` (cosine), at most ``max_neighbours`` per track (after fit)."""
        if self._neighbours is None:
            raise RuntimeError(f"{self.name}: call fit() before recommend()")
        return self._neighbours

    def recommend(self, users: DataFrame, n: int, exclude: DataFrame | None = None) -> DataFrame:
        """Top ``n`` tracks per user by summed similarity to the user's history, minus ``exclude``.

        Users without training history get no rows (a co-occurrence model has nothing to go on).

        Returns:
            ``user_id, track_id, rank, score``.
        """
        _check_n(n)
        neighbours = self.neighbours
        assert self._history is not None
        targets = _distinct_users(users)
        candidates = (
            self._history.join(targets, [C.USER_ID], "left_semi")
            .join(neighbours, [C.TRACK_ID])
            .groupBy(C.USER_ID, F.col(_NEIGHBOUR).alias(C.TRACK_ID))
            .agg(F.sum(C.SCORE).alias(C.SCORE))
        )
        if exclude is not None:
            candidates = candidates.join(_exclusions(exclude, targets), [C.USER_ID, C.TRACK_ID], "left_anti")
        return _top_n_per_user(candidates, n, [F.desc(C.SCORE), F.asc(C.TRACK_ID)])
