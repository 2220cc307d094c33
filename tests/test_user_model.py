"""User model of the RL playlist system: training rows (Spark), the learned model (torch), its metrics."""

from __future__ import annotations

import datetime as dt
import math
import os
import sys

import numpy as np
import pytest
import torch
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec.config import RlConfig
from spotrec.rl.features import (
    CONTEXT_COLUMNS,
    TRACK_COLUMNS,
    USER_COLUMNS,
    FeatureLayout,
    current_user_context,
    exploration_log,
    labelled_plays,
    pack_features,
    training_rows,
)
from spotrec.rl.user_model import (
    HEADS,
    SKIPPED,
    UserModelData,
    UserModelNet,
    auc,
    calibration_table,
    evaluate_user_model,
    load_user_model,
    log_loss,
    save_user_model,
    track_rate_baseline,
    train_user_model,
)
from spotrec.tables import EXPLORATION_SESSIONS, SILVER_EVENTS, TRACKS

# Executors must run this interpreter (it has pandas / torch), whatever `python3` is on PATH.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
torch.set_num_threads(1)

T0 = dt.datetime(2026, 9, 7, 12, 0, 0)


def _events(spark: SparkSession, rows: list[tuple]) -> object:
    """Silver events from (user, track, minutes after T0, ms_played, duration_ms, skipped, session, pos)."""
    full = []
    for i, (user, track, minute, ms, dur, skipped, session, pos) in enumerate(rows):
        ts = T0 + dt.timedelta(minutes=minute)
        event = (f"e{i}", user, track, ts, ms, dur, None, None, None, None, skipped, None, None, session, pos)
        full.append((*event, "synthetic", "f", "r", ts.date()))
    return spark.createDataFrame(full, SILVER_EVENTS.schema)


def _tracks(spark: SparkSession, rows: list[tuple]) -> object:
    """Tracks from (track, duration_ms, acousticness, danceability, energy, valence, tempo)."""
    return spark.createDataFrame(
        [(t, None, None, None, None, None, d, a, dn, e, v, tp, "synthetic") for t, d, a, dn, e, v, tp in rows],
        TRACKS.schema,
    )


def test_labelled_plays_labels_sessions_and_fallbacks(spark: SparkSession) -> None:
    cfg = RlConfig(listen_threshold_s=30.0, completion_fraction=0.9)
    events = _events(
        spark,
        [
            ("u1", "a", 0, 200_000, 200_000, False, "s1", 1),  # completed
            ("u1", "b", 4, 10_000, 200_000, True, "s1", 2),  # skipped early
            ("u1", "a", 5, 100_000, None, None, None, None),  # no session, no duration, no skip flag
            ("u2", "b", 9, 20_000, None, None, None, None),  # below X: skipped by the 30 s rule
        ],
    )
    tracks = _tracks(spark, [("a", 100_000, 0.1, 0.2, 0.3, 0.4, 120.0), ("b", None, None, None, None, None, None)])
    got = labelled_plays(events, tracks, cfg).drop("ts")
    schema = T.StructType(
        [
            T.StructField("user_id", T.StringType()),
            T.StructField("session_id", T.StringType()),
            T.StructField("position", T.IntegerType()),
            T.StructField("track_id", T.StringType()),
            T.StructField("completion", T.DoubleType()),
            T.StructField("label_completed", T.IntegerType()),
            T.StructField("label_skipped", T.IntegerType()),
            T.StructField("label_listened", T.IntegerType()),
        ]
    )
    expected = spark.createDataFrame(
        [
            ("u1", "s1", 1, "a", 1.0, 1, 0, 1),
            ("u1", "s1", 2, "b", 0.05, 0, 1, 0),
            # duration from the catalogue (100 s): 100 s played = completed
            ("u1", "u1:2026-09-07", 1, "a", 1.0, 1, 0, 1),
            # unknown duration, no skip flag: skipped because 20 s < X, hence not completed
            ("u2", "u2:2026-09-07", 1, "b", None, 0, 1, 0),
        ],
        schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True, ignore_column_order=False)


def _exploration_events(spark: SparkSession):  # type: ignore[no-untyped-def]
    """u1: exploration session x1 (2 of 2 served tracks played: censored), an organic session s1;
    u2: exploration session x2 (1 of 3 served played: the listener left)."""
    plays = [
        ("u1", "a", 0, 200_000, 200_000, False, "x1", 0),
        ("u1", "b", 4, 10_000, 200_000, True, "x1", 1),
        ("u1", "b", 9, 200_000, 200_000, False, "s1", 0),
        ("u2", "a", 9, 50_000, 200_000, False, "x2", 0),
    ]
    served = {"x1": "exploration:2", "x2": "exploration:3"}
    events = _events(spark, plays)  # the helper leaves context_type / context_id null
    session = F.col("session_id")
    return events.withColumns(
        {
            "context_type": F.when(session == "s1", "playlist").otherwise("exploration"),
            "context_id": F.when(session == "x1", served["x1"]).when(session == "x2", served["x2"]),
        }
    )


def test_exploration_log_keeps_the_shuffled_sessions_with_their_censored_end(spark: SparkSession) -> None:
    cfg = RlConfig(listen_threshold_s=30.0, completion_fraction=0.9)
    events = _exploration_events(spark)
    tracks = _tracks(spark, [("a", 200_000, 0.1, 0.2, 0.3, 0.4, 120.0), ("b", 200_000, 0.1, 0.2, 0.3, 0.4, 90.0)])
    got = exploration_log(events, tracks, cfg).drop("ts")
    expected = spark.createDataFrame(
        [
            ("u1", "x1", 1, "a", 1.0, 1, 0, 1, 0),
            ("u1", "x1", 2, "b", 0.05, 0, 1, 0, 0),  # the last served track: the list ran out, no end
            ("u2", "x2", 1, "a", 0.25, 0, 0, 1, 1),  # left after 1 of 3 served tracks
        ],
        "user_id string, session_id string, position int, track_id string, completion double, "
        "label_completed int, label_skipped int, label_listened int, label_ended int",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    assert got.columns == [c for c in EXPLORATION_SESSIONS.schema.fieldNames() if c != "ts"]
    # Training rows: with ended_from="exploration" only the log's sessions carry an end label.
    rows = training_rows(events, tracks, cfg, ended_from="exploration").select("session_id", "position", "label_ended")
    assert sorted(tuple(r) for r in rows.collect()) == [
        ("s1", 1, None),
        ("x1", 1, 0),
        ("x1", 2, 0),
        ("x2", 1, 1),
    ]
    every_last = training_rows(events, tracks, cfg).select("session_id", "position", "label_ended")
    assert sorted(tuple(r) for r in every_last.collect()) == [("s1", 1, 1), ("x1", 1, 0), ("x1", 2, 1), ("x2", 1, 1)]


def test_training_rows_use_only_earlier_sessions(spark: SparkSession) -> None:
    cfg = RlConfig(history_prior_strength=1.0, max_position=10)
    # u1: session s1 (a completed, b skipped), then s2 (a then b, both skipped).
    events = _events(
        spark,
        [
            ("u1", "a", 0, 100_000, 100_000, False, "s1", 1),
            ("u1", "b", 3, 5_000, 100_000, True, "s1", 2),
            ("u1", "a", 60, 5_000, 100_000, True, "s2", 1),
            ("u1", "b", 61, 5_000, 100_000, True, "s2", 2),
        ],
    )
    tracks = _tracks(spark, [("a", 100_000, 0.2, 0.4, 0.6, 0.8, 100.0), ("b", 100_000, 0.0, 0.0, 1.0, 0.0, 200.0)])
    got = training_rows(events, tracks, cfg).select(
        "session_id",
        "position",
        "track_id",
        *USER_COLUMNS,
        *TRACK_COLUMNS,
        *CONTEXT_COLUMNS,
        "label_skipped",
        "label_ended",
    )
    # Global rates: skip 3/4; completion (1 + 0.05 * 3) / 4 = 0.2875. Catalogue mean taste: acousticness
    # 0.1, danceability 0.2, energy 0.8, valence 0.4, tempo 150/200 = 0.75. Plays: a 2, b 2 -> popularity 1.
    first = [0.75, 0.2875, 0.0, 0.1, 0.2, 0.8, 0.4, 0.75]
    # Before s2: 2 plays, 1 skip, completion 1.05, one completed play (track a).
    second = [
        (1 + 0.75) / 3,
        (1.05 + 0.2875) / 3,
        math.log1p(2) / 10,
        (0.2 + 0.1) / 2,
        (0.4 + 0.2) / 2,
        (0.6 + 0.8) / 2,
        (0.8 + 0.4) / 2,
        (0.5 + 0.75) / 2,
    ]
    a = [0.2, 0.4, 0.6, 0.8, 0.5, 100_000 / 600_000, 1.0]
    b = [0.0, 0.0, 1.0, 0.0, 1.0, 100_000 / 600_000, 1.0]
    expected_rows = [
        ("s1", 1, "a", *first, *a, 0.1, 0.0, 0, 0),
        ("s1", 2, "b", *first, *b, 0.2, 0.0, 1, 1),  # last play of s1: label_ended
        ("s2", 1, "a", *second, *a, 0.1, 0.0, 1, 0),
        ("s2", 2, "b", *second, *b, 0.2, 0.1, 1, 1),  # one skip just before
    ]
    expected = spark.createDataFrame(expected_rows, got.schema)
    assert_approx_df_equality(got, expected, precision=1e-9, ignore_row_order=True, ignore_nullable=True)

    # The context of u1's *next* session summarises all four plays (3 skips; only a completed).
    now = current_user_context(events, tracks, cfg)
    after_all = [
        (3 + 0.75) / 5,
        (1.15 + 0.2875) / 5,
        math.log1p(4) / 10,
        (0.2 + 0.1) / 2,
        (0.4 + 0.2) / 2,
        (0.6 + 0.8) / 2,
        (0.8 + 0.4) / 2,
        (0.5 + 0.75) / 2,
    ]
    assert_approx_df_equality(
        now, spark.createDataFrame([("u1", *after_all)], now.schema), precision=1e-9, ignore_nullable=True
    )


def test_pack_features_orders_blocks_by_layout(spark: SparkSession) -> None:
    layout = FeatureLayout(user=("u_b", "u_a"), track=("t_a",), context=("c_a",), track_vector_dim=2)
    df = spark.createDataFrame(
        [("x", 1.0, 2.0, 3.0, [7.0, 8.0], 4.0)],
        "id string, u_a double, u_b double, t_a double, t_vector array<float>, c_a double",
    )
    row = pack_features(df, layout).first()
    assert row is not None
    assert row.asDict() == {
        "id": "x",
        "user_features": [2.0, 1.0],
        "track_features": [3.0, 7.0, 8.0],
        "context_features": [4.0],
    }


# --- metrics against hand-computed values -----------------------------------------------------------


def test_auc_and_log_loss_match_hand_values() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    # Positive/negative pairs: (0.35 > 0.1), (0.35 < 0.4), (0.8 > both) -> 3 of 4.
    assert auc(y, p) == pytest.approx(0.75)
    assert auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    expected = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert log_loss(y, p) == pytest.approx(expected)
    assert math.isnan(auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_calibration_table_bins_predictions() -> None:
    table = calibration_table(
        labels=np.array([0, 1, 1, 1]),
        probs=np.array([0.1, 0.2, 0.9, 1.0]),
        bins=2,
        true_probs=np.array([0.0, 0.2, 0.8, 1.0]),
    )
    assert table.to_dict("list") == {
        "bin": [0, 1],
        "count": [2, 2],
        "mean_pred": pytest.approx([0.15, 0.95]),
        "observed": [0.5, 1.0],
        "true": pytest.approx([0.1, 0.9]),
    }


def test_track_rate_baseline_shrinks_toward_global_rate() -> None:
    labels = np.array([[1, 0, 1], [0, 1, 0], [0, 1, 0], [1, 0, 1]], dtype=np.float32)
    empty = np.zeros((4, 1), np.float32)
    train = UserModelData(empty, empty, empty, labels, np.array(["a", "b", "b", "c"]))
    rows = UserModelData(empty[:2], empty[:2], empty[:2], labels[:2], np.array(["b", "new"]))
    got = track_rate_baseline(train, rows, prior_strength=2.0)
    # Track b: 2 plays, 2 skips; global skip rate 0.5 -> (2 + 2 * 0.5) / (2 + 2) = 0.75.
    assert got[0, SKIPPED] == pytest.approx(0.75)
    assert got[0, 0] == pytest.approx((0 + 2 * 0.5) / 4)
    assert got[1].tolist() == pytest.approx([0.5, 0.5, 0.5])


# --- known answer: the planted skip rule ----------------------------------------------------------------


def planted_skip_data(n: int, seed: int) -> tuple[UserModelData, np.ndarray]:
    """Users with a low-energy taste always skip tracks with energy > 0.8; everything else is completed.

    Returns the data and the true skip probabilities (0 or 1).
    """
    rng = np.random.default_rng(seed)
    layout = FeatureLayout()
    user = rng.uniform(0, 1, (n, layout.user_dim)).astype(np.float32)
    energy_taste = USER_COLUMNS.index("u_taste_energy")
    low_energy_user = rng.random(n) < 0.5
    user[:, energy_taste] = np.where(low_energy_user, rng.uniform(0.0, 0.3, n), rng.uniform(0.6, 1.0, n))
    track = rng.uniform(0, 1, (n, layout.track_dim)).astype(np.float32)
    energy = TRACK_COLUMNS.index("t_energy")
    # Oversample high-energy tracks so the rule is not rare.
    track[:, energy] = np.where(rng.random(n) < 0.4, rng.uniform(0.8, 1.0, n), rng.uniform(0, 1, n))
    context = rng.uniform(0, 1, (n, layout.context_dim)).astype(np.float32)
    skip = (low_energy_user & (track[:, energy] > 0.8)).astype(np.float32)
    labels = np.stack([1 - skip, skip, 1 - skip], axis=1)
    return UserModelData(user, track, context, labels, np.array([f"t{i}" for i in range(n)])), skip


def test_user_model_recovers_planted_skip_rule(tmp_path) -> None:
    cfg = RlConfig(user_model_max_epochs=30, user_model_patience=4, user_model_batch_size=128, seed=3)
    train, _ = planted_skip_data(3000, seed=1)
    validation, _ = planted_skip_data(500, seed=2)
    test, true_skip = planted_skip_data(1000, seed=3)
    model = train_user_model(train, validation, FeatureLayout(), cfg)

    probs = model.predict(test)
    assert auc(test.labels[:, SKIPPED], probs[:, SKIPPED]) > 0.95
    # The rule itself: low-energy users facing energy > 0.8 are predicted to skip, others not.
    assert np.mean((probs[:, SKIPPED] > 0.5) == (true_skip == 1)) > 0.95

    truth = np.stack([1 - true_skip, true_skip, 1 - true_skip], axis=1)
    metrics = evaluate_user_model(model, train, test, true_probs=truth)

    def value(head: str, predictor: str, metric: str) -> float:
        hit = metrics[(metrics["head"] == head) & (metrics["predictor"] == predictor) & (metrics["metric"] == metric)]
        assert len(hit) == 1, (head, predictor, metric)
        return float(hit["value"].iloc[0])

    for head in HEADS:
        model_loss = value(head, "user_model", "log_loss")
        assert model_loss < value(head, "global_rate", "log_loss")
        assert model_loss < value(head, "track_rate", "log_loss")
        assert value(head, "global_rate", "auc") == pytest.approx(0.5)
        assert value(head, "truth", "auc") == pytest.approx(1.0)
    calib = metrics[(metrics["head"] == "skipped") & (metrics["metric"] == "calib_count")]
    assert calib["value"].sum() == len(test)

    # Versioned checkpoint: same version and predictions after a round trip.
    path = save_user_model(model, tmp_path / "user_model")
    assert path.name == f"{model.version}.pt"
    loaded = load_user_model(tmp_path / "user_model")
    assert loaded.version == model.version
    np.testing.assert_allclose(loaded.predict(test), probs, rtol=1e-6)
    assert model.history and model.history[0]["epoch"] == 1


def test_termination_head_learns_when_the_listener_leaves_and_drives_the_simulator(tmp_path) -> None:
    """Planted: the listener leaves right after a skip late in the session (position feature > 0.5), never
    otherwise. The fourth head must find it, per outcome, and the simulator must end sessions from it."""
    from gymnasium.utils.env_checker import check_env

    from spotrec.rl.env import LearnedResponse, PlaylistEnv, SessionSpec

    def with_ends(data: UserModelData) -> UserModelData:
        data.ended = ((data.labels[:, SKIPPED] == 1) & (data.context[:, 0] > 0.5)).astype(np.float32)
        return data

    cfg = RlConfig(
        user_model_max_epochs=30, user_model_patience=4, user_model_batch_size=128, seed=3, termination="learned"
    )
    train, validation = (with_ends(planted_skip_data(n, seed=s)[0]) for n, s in ((3000, 1), (500, 2)))
    # 40% of the training rows carry no end label (organic sessions beside an exploration log): the
    # termination head must learn from the rest (a NaN in its loss would ruin the fit).
    assert train.ended is not None
    train.ended[np.random.default_rng(0).random(len(train)) < 0.4] = np.nan
    test = with_ends(planted_skip_data(1000, seed=3)[0])
    model = train_user_model(train, validation, FeatureLayout(), cfg)
    assert model.has_termination
    ctx = test.context
    ends = np.array(
        [model.end_probabilities(test.user[i], test.track[i], ctx[i])[0] for i in range(len(test))]
    )  # (n, 3): complete, listen, skip
    # Each play's own outcome (complete or skip in this data): the head ranks the real last plays first.
    own = np.where(test.labels[:, SKIPPED] == 1, 2, 0)
    p_end = ends[np.arange(len(test)), own]
    assert auc(test.ended, p_end) > 0.95
    assert np.mean((p_end > 0.5) == (test.ended == 1)) > 0.95
    # The round trip keeps the head; a model trained without it has today's parameters only.
    save_user_model(model, tmp_path / "um")
    loaded = load_user_model(tmp_path / "um")
    np.testing.assert_allclose(loaded.end_probabilities(test.user[0], test.track[0], ctx[0]), ends[:1], rtol=1e-6)
    plain = UserModelNet(FeatureLayout(), [8])
    assert not any(k.startswith("end.") for k in plain.state_dict())

    # The simulator quits from the head: a late always-skipped track ends the session.
    layout = FeatureLayout()
    spec = SessionSpec("u1", test.user[0], np.array(["t0", "t1"]), test.track[:2])
    probs = LearnedResponse(model).probabilities(spec, np.array([0, 1]), position=40, consecutive_skips=0)
    assert probs.p_quit_after is not None and probs.p_quit_after.shape == (2, 3)
    env = PlaylistEnv([spec], LearnedResponse(model), cfg.model_copy(update={"pool_size": 2}), layout)
    check_env(env, skip_render_check=True)
    with pytest.raises(ValueError, match="label_ended"):
        train_user_model(planted_skip_data(50, 4)[0], planted_skip_data(50, 5)[0], layout, cfg)


def test_ensemble_averages_seeded_members_beats_their_mean_log_loss_and_round_trips(tmp_path) -> None:
    """Three members from seeds 3, 4, 5: each is the single model of its seed, they differ, and the ensemble
    (mean probability) has a held-out log-loss no worse than its members' average (convexity)."""
    base = RlConfig(user_model_max_epochs=4, user_model_patience=2, user_model_batch_size=128, seed=3)
    train, _ = planted_skip_data(1500, seed=1)
    validation, _ = planted_skip_data(300, seed=2)
    test, _ = planted_skip_data(600, seed=3)
    ensemble = train_user_model(train, validation, FeatureLayout(), base.model_copy(update={"user_model_ensemble": 3}))
    singles = [
        train_user_model(train, validation, FeatureLayout(), base.model_copy(update={"seed": s})) for s in (3, 4, 5)
    ]
    member_probs = [m.predict(test) for m in singles]
    assert not np.allclose(member_probs[0], member_probs[1])  # different seeds, different fits
    probs = ensemble.predict(test)
    np.testing.assert_allclose(probs, np.mean(member_probs, axis=0), rtol=1e-5, atol=1e-6)
    for head in range(len(HEADS)):
        members = np.mean([log_loss(test.labels[:, head], p[:, head]) for p in member_probs])
        assert log_loss(test.labels[:, head], probs[:, head]) <= members + 1e-9
    assert {row["member"] for row in ensemble.history} == {0.0, 1.0, 2.0}

    path = save_user_model(ensemble, tmp_path / "user_model")
    loaded = load_user_model(path)
    assert loaded.version == ensemble.version
    np.testing.assert_allclose(loaded.predict(test), probs, rtol=1e-6)
