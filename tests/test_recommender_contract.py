"""The contract every :class:`~spotrec.evaluation.recommender.Recommender` keeps, as one mixin of tests.

In the style of benfred/implicit's ``tests/recommender_base_test.py``: :class:`RecommenderContract` holds the
tests; each ``Test*Contract`` class only says how to build its (fitted) model on a tiny shared world. Every
recommender the harness scores is here: popularity, co-occurrence, MLlib ALS, CG ALS and each RNN method.

The contract, for ``recommend(users, n, exclude)``:

- columns ``user_id, track_id, rank (int), score (double)``; only requested users, each track once;
- ranks run 1..(list length) per user, and the score never increases with rank;
- at most ``n`` per user (and ``n`` for some user: the test is not vacuous);
- no excluded (user, track) pair, the heard tracks and one extra unheard track per user;
- deterministic: the same seed and input, fitted again, give identical lists.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import RnnConfig, WeeklyConfig
from spotrec.evaluation.baselines import CooccurrenceRecommender, PopularityRecommender
from spotrec.evaluation.recommender import InteractionRecommender, Recommender
from spotrec.rnn.model import RnnModel, fit_rnn, user_histories
from spotrec.rnn.recommender import LAST_TRACK, MEAN_HISTORY, MEAN_HISTORY_BIAS, RNN, RnnRecommender
from spotrec.weekly.als import AlsRecommender, make_recommender
from tests.test_ann import _silver_events

N = 3
USERS = [f"u{i:02d}" for i in range(12)]
REQUESTED = [*USERS[:8], "nobody"]  # "nobody" has no history: some models give it nothing, none may fail
EXTRA_EXCLUDED = "t00"  # the most played track, excluded for every user beside their heard tracks

RNN_CONFIG = RnnConfig(
    vector_size=8,
    window=2,
    w2v_epochs=2,
    w2v_batch_size=32,
    sequence_length=3,
    hidden_size=8,
    rnn_epochs=2,
    batch_size=16,
    n_trees=5,
    use_playlists=False,
    seed=11,
)


@dataclass(eq=False)
class World:
    """Two taste groups of 8 tracks, 12 users with 4 sessions of 4 plays each; t00 is played by everyone."""

    spark: SparkSession
    events: DataFrame
    interactions: DataFrame
    users: DataFrame
    exclude: DataFrame
    root: Path

    @functools.cache  # noqa: B019 (one World per test module)
    def rnn_model(self, fit: int) -> RnnModel:
        """The ``fit``-th independent fit of the RNN model on the events (same seed, own folder)."""
        torch.set_num_threads(1)
        out = self.root / f"rnn-fit{fit}"
        return fit_rnn(self.spark, self.events, None, RNN_CONFIG, str(out), "v-contract")


@pytest.fixture(scope="module")
def world(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> World:
    start = dt.datetime(2026, 3, 2, 8)
    plays = []
    for u, user in enumerate(USERS):
        group = u % 2
        for day in range(4):
            tracks = ["t00", *(f"t{8 * group + (u + day + j) % 8:02d}" for j in range(3))]
            for j, track in enumerate(tracks):
                plays.append((user, track, start + dt.timedelta(days=day, minutes=4 * j), f"s{day}"))
    events = _silver_events(spark, plays).cache()
    user_idx = {user: i for i, user in enumerate(USERS)}
    counts: dict[tuple[str, str], int] = {}
    for user, track, _, _ in plays:
        counts[(user, track)] = counts.get((user, track), 0) + 1
    interactions = spark.createDataFrame(
        [(user, track, user_idx[user], int(track[1:]), float(c)) for (user, track), c in sorted(counts.items())],
        "user_id string, track_id string, user_idx int, track_idx int, confidence double",
    ).cache()
    heard = interactions.select(C.USER_ID, C.TRACK_ID)
    extra = spark.createDataFrame([(user, EXTRA_EXCLUDED) for user in REQUESTED], "user_id string, track_id string")
    users = spark.createDataFrame([(user,) for user in REQUESTED], "user_id string")
    return World(spark, events, interactions, users, heard.unionByName(extra), tmp_path_factory.mktemp("contract"))


class RecommenderContract:
    """The contract tests; a subclass implements :meth:`build`."""

    def build(self, world: World, fit: int) -> Recommender:
        """The model for this class, fitted (or to be fitted by :func:`fitted`) on ``world``.

        ``fit`` numbers independent fits (0, 1, ...) for the determinism test.
        """
        raise NotImplementedError

    def fitted(self, world: World, fit: int) -> Recommender:
        model = self.build(world, fit)
        if isinstance(model, InteractionRecommender):  # as the harness does
            model.fit(world.interactions)
        return model

    @pytest.fixture(scope="class")
    def recs(self, world: World) -> DataFrame:
        return self.fitted(world, 0).recommend(world.users, N, world.exclude).cache()

    @staticmethod
    def _lists(recs: DataFrame) -> pd.DataFrame:
        return recs.toPandas().sort_values([C.USER_ID, C.RANK]).reset_index(drop=True)

    def test_columns_and_types(self, recs: DataFrame) -> None:
        assert [(f.name, f.dataType.simpleString()) for f in recs.schema.fields] == [
            (C.USER_ID, "string"),
            (C.TRACK_ID, "string"),
            (C.RANK, "int"),
            (C.SCORE, "double"),
        ]

    def test_only_requested_users_each_track_once(self, recs: DataFrame) -> None:
        lists = self._lists(recs)
        assert set(lists[C.USER_ID]) <= set(REQUESTED)
        assert not lists.duplicated([C.USER_ID, C.TRACK_ID]).any()

    def test_ranks_run_from_1_with_non_increasing_score(self, recs: DataFrame) -> None:
        for user, group in self._lists(recs).groupby(C.USER_ID):
            assert group[C.RANK].tolist() == list(range(1, len(group) + 1)), user
            scores = group[C.SCORE].tolist()
            assert all(a >= b for a, b in itertools.pairwise(scores)), (user, scores)

    def test_at_most_n_per_user(self, recs: DataFrame) -> None:
        sizes = self._lists(recs).groupby(C.USER_ID).size()
        assert sizes.max() == N and (sizes <= N).all()
        assert len(sizes) >= len(REQUESTED) - 1  # every user with a history gets a list

    def test_excluded_pairs_are_never_recommended(self, recs: DataFrame, world: World) -> None:
        assert recs.join(world.exclude, [C.USER_ID, C.TRACK_ID]).count() == 0
        assert recs.where(F.col(C.TRACK_ID) == EXTRA_EXCLUDED).count() == 0

    def test_deterministic_for_the_same_seed_and_input(self, recs: DataFrame, world: World) -> None:
        again = self.fitted(world, 1).recommend(world.users, N, world.exclude)
        first, second = self._lists(recs), self._lists(again)
        pd.testing.assert_frame_equal(first.drop(columns=C.SCORE), second.drop(columns=C.SCORE))
        # Scores are float32 distances (Annoy / Voyager); 1 - cos near 0 keeps float32's absolute, not relative,
        # resolution, so equal lists may differ by ~1e-8 in a near-zero score.
        assert second[C.SCORE].tolist() == pytest.approx(first[C.SCORE].tolist(), rel=1e-6, abs=1e-7)


class TestPopularityContract(RecommenderContract):
    def build(self, world: World, fit: int) -> Recommender:
        return PopularityRecommender()


class TestCooccurrenceContract(RecommenderContract):
    def build(self, world: World, fit: int) -> Recommender:
        return CooccurrenceRecommender()


class TestAlsContract(RecommenderContract):
    def build(self, world: World, fit: int) -> Recommender:
        cfg = WeeklyConfig(rank=2, max_iter=3, num_blocks=2, reg_param=0.1, alpha=1.0)
        return AlsRecommender(cfg, block_size=4)


class TestCgAlsContract(RecommenderContract):
    def build(self, world: World, fit: int) -> Recommender:
        cfg = WeeklyConfig(rank=2, max_iter=3, num_blocks=2, reg_param=0.1, alpha=1.0, solver="cg")
        return make_recommender(cfg, block_size=4)


class RnnContract(RecommenderContract):
    method = RNN

    def build(self, world: World, fit: int) -> Recommender:
        model = world.rnn_model(fit)
        histories = user_histories(world.events, model.vocabulary(world.spark), RNN_CONFIG)
        return RnnRecommender(model, histories, RNN_CONFIG, self.method)


class TestRnnContract(RnnContract):
    method = RNN


class TestMeanHistoryContract(RnnContract):
    method = MEAN_HISTORY


class TestLastTrackContract(RnnContract):
    method = LAST_TRACK


class TestMeanHistoryWithRnnBiasContract(RnnContract):
    method = MEAN_HISTORY_BIAS


def test_rnn_methods_are_recommenders_constructed_fitted(world: World) -> None:
    """The harness must not try to fit them on interactions: they are not InteractionRecommenders."""
    model = RnnContract().build(world, 0)
    assert isinstance(model, Recommender) and not isinstance(model, InteractionRecommender)
    with pytest.raises(ValueError, match="needs a softmax RNN"):
        RnnRecommender(
            world.rnn_model(0), world.events, RNN_CONFIG.model_copy(update={"rnn_loss": "l2"}), MEAN_HISTORY_BIAS
        )
