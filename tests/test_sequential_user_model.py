"""The sequential (GRU) user model: session grouping, sequence features, a planted sequential effect that
the GRU learns and the MLP cannot, and the learned simulator it drives (gymnasium's checker)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from spotrec.config import RlConfig
from spotrec.rl.env import History, PlaylistEnv, SessionSpec
from spotrec.rl.features import FeatureLayout
from spotrec.rl.sequential import (
    SequentialResponse,
    SequentialUserModel,
    SequentialUserModelNet,
    SessionData,
    sequence_features,
    sequential_from_payload,
    sequential_payload,
    train_sequential_user_model,
)
from spotrec.rl.user_model import SKIPPED, UserModelData, auc, train_user_model

torch.set_num_threads(1)

ARTISTS = 4
LAYOUT = FeatureLayout(
    user=("u_a",),
    track=(*(f"t_artist{i}" for i in range(ARTISTS)), "t_other"),
    context=("c_position", "c_consecutive_skips"),
)


def planted_sessions(n_sessions: int, length: int, seed: int) -> UserModelData:
    """Sessions whose tracks are by one of 4 artists (one-hot features, the next track repeats the
    artist half the time). A track is skipped with chance 0.9 when the two tracks before it are by its
    artist, else 0.1: an effect of the sequence that no single play's features show."""
    rng = np.random.default_rng(seed)
    rows = n_sessions * length
    artist = np.zeros((n_sessions, length), int)
    artist[:, 0] = rng.integers(ARTISTS, size=n_sessions)
    for t in range(1, length):
        repeat = rng.random(n_sessions) < 0.5
        artist[:, t] = np.where(repeat, artist[:, t - 1], rng.integers(ARTISTS, size=n_sessions))
    tired = np.zeros_like(artist, bool)
    tired[:, 2:] = (artist[:, 2:] == artist[:, 1:-1]) & (artist[:, 2:] == artist[:, :-2])
    skip = (rng.random((n_sessions, length)) < np.where(tired, 0.9, 0.1)).astype(np.float32).ravel()
    track = np.zeros((rows, LAYOUT.track_dim), np.float32)
    track[np.arange(rows), artist.ravel()] = 1.0
    track[:, -1] = rng.random(rows)
    position = np.tile(np.arange(1, length + 1), n_sessions)
    context = np.column_stack([position / 50.0, np.zeros(rows)]).astype(np.float32)
    labels = np.stack([1 - skip, skip, 1 - skip], axis=1).astype(np.float32)
    keys = np.repeat([f"s{i}" for i in range(n_sessions)], length)
    order = rng.permutation(rows)  # rows arrive in any order, as from Spark
    return UserModelData(
        user=np.full((rows, 1), 0.5, np.float32)[order],
        track=track[order],
        context=context[order],
        labels=labels[order],
        track_ids=np.array([f"a{a}" for a in artist.ravel()])[order],
        session_keys=keys[order],
        positions=position[order],
    )


def test_session_data_groups_rows_by_session_in_position_order() -> None:
    data = UserModelData(
        user=np.array([[1.0], [2.0], [1.0]], np.float32),
        track=np.array([[0.3], [0.7], [0.1]], np.float32),
        context=np.zeros((3, 1), np.float32),
        labels=np.array([[1, 0, 1], [0, 1, 0], [0, 1, 0]], np.float32),
        session_keys=np.array(["a", "b", "a"]),
        positions=np.array([2, 1, 1]),
    )
    s = SessionData.from_rows(data)
    assert s.order is not None
    assert s.order.tolist() == [[2, 0], [1, -1]]
    assert s.valid.tolist() == [[True, True], [True, False]]
    np.testing.assert_allclose(s.track[:, :, 0], [[0.1, 0.3], [0.7, 0.0]])
    assert s.user[:, 0].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="session keys"):
        SessionData.from_rows(UserModelData(data.user, data.track, data.context, data.labels))


def test_sequence_features_hand_values() -> None:
    # One session of three plays on the unit circle: 0 deg, 90 deg, 0 deg (centre 0, so cosines are exact).
    track = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    got = sequence_features(track, torch.tensor([0, 1]), torch.zeros(2))[0]
    # distance to previous, smallest distance to any earlier, earlier plays within 0.15 (/ 5)
    np.testing.assert_allclose(got.numpy(), [[0, 0, 0], [1, 1, 0], [1, 0, 0.2]], atol=1e-6)


def test_gru_learns_a_planted_sequential_effect_the_mlp_cannot(tmp_path) -> None:
    cfg = RlConfig(
        user_model_max_epochs=25,
        user_model_patience=4,
        user_model_batch_size=256,
        user_model_hidden=[32],
        user_model_gru_hidden=16,
        user_model_lr=1e-2,
        seed=2,
    )
    train, validation, test = (planted_sessions(n, 8, s) for n, s in ((1500, 1), (300, 2), (500, 3)))
    gru = train_sequential_user_model(train, validation, LAYOUT, cfg)
    mlp = train_user_model(train, validation, LAYOUT, cfg)
    y = test.labels[:, SKIPPED]
    gru_auc = auc(y, gru.predict(test)[:, SKIPPED])
    mlp_auc = auc(y, mlp.predict(test)[:, SKIPPED])
    # The best possible AUC with skip chances 0.9 / 0.1 is about 0.9; the MLP sees one play at a time.
    assert gru_auc > 0.8, gru_auc
    assert mlp_auc < 0.65, mlp_auc
    # Round trip through the checkpoint payload.
    loaded = sequential_from_payload(sequential_payload(gru))
    np.testing.assert_allclose(loaded.predict(test), gru.predict(test), atol=1e-6)

    # The simulator steps the same state: after two plays of artist 0 a third one is likely skipped.
    def one_hot(a: int) -> np.ndarray:
        v = np.zeros(LAYOUT.track_dim, np.float32)
        v[a] = 1.0
        v[-1] = 0.5
        return v

    spec = SessionSpec(
        "u", np.array([0.5]), np.array(["x0", "x1", "x2", "y"]), np.stack([one_hot(0)] * 3 + [one_hot(1)])
    )
    response = SequentialResponse(gru)
    fresh = response.probabilities(spec, np.array([2, 3]), 3, 0, History((0, 1), (False, False), (0, 0)))
    assert fresh.p_skip[0] > 0.7 > 0.3 > fresh.p_skip[1]
    first = response.probabilities(spec, np.array([2]), 1, 0, History())
    assert first.p_skip[0] < 0.3


def test_learned_simulator_with_the_gru_and_its_termination_head_passes_the_checker() -> None:
    cfg = RlConfig(
        pool_size=5, playlist_length=4, user_model_hidden=[8], user_model_gru_hidden=4, termination="learned"
    )
    torch.manual_seed(0)
    net = SequentialUserModelNet(LAYOUT, cfg.user_model_gru_hidden, cfg.user_model_hidden, termination=True)
    model = SequentialUserModel(net=net, layout=LAYOUT, cfg=cfg)
    rng = np.random.default_rng(0)
    sessions = [
        SessionSpec(f"u{i}", rng.random(1), np.array([f"t{j}" for j in range(n)]), rng.random((n, LAYOUT.track_dim)))
        for i, n in enumerate((3, 5))
    ]
    response = SequentialResponse(model)
    env = PlaylistEnv(sessions, response, cfg, LAYOUT)
    check_env(env, skip_render_check=True)
    # Termination comes from the head: P(end | outcome) per candidate and outcome.
    probs = response.probabilities(sessions[1], np.array([0, 1]), 1, 0, History())
    assert probs.p_quit_after is not None and probs.p_quit_after.shape == (2, 3)
    # The cached state equals the state rebuilt from scratch.
    env.reset(seed=1, options={"session": sessions[1]})
    env.step(0)
    env.step(1)
    h = response.state(sessions[1], env.state().history)
    np.testing.assert_allclose(h, SequentialResponse(model).state(sessions[1], env.state().history), atol=1e-6)


def test_agent_features_carry_the_session_and_drive_ah_dqn() -> None:
    """The agent's own GRU features: per-candidate block (zeros on unplayable slots), state = GRU state +
    skip / completion fractions appended to the context; AH-DQN trains and acts on them."""
    from spotrec.rl.agent import train_agent
    from spotrec.rl.evaluate import run_sessions
    from spotrec.rl.planning import PREDICTION_COLUMNS, SequentialAgentFeatures
    from spotrec.rl.policies import DQNPolicy

    cfg = RlConfig(
        pool_size=5,
        playlist_length=4,
        user_model_hidden=[8],
        user_model_gru_hidden=4,
        termination="learned",
        episodes=12,
        learning_starts=8,
        batch_size=4,
        q_hidden=[8],
        log_every=10**6,
    )
    torch.manual_seed(0)
    net = SequentialUserModelNet(LAYOUT, cfg.user_model_gru_hidden, cfg.user_model_hidden, termination=True)
    model = SequentialUserModel(net=net, layout=LAYOUT, cfg=cfg)
    rng = np.random.default_rng(0)
    sessions = [
        SessionSpec(f"u{i}", rng.random(1), np.array([f"t{j}" for j in range(n)]), rng.random((n, LAYOUT.track_dim)))
        for i, n in enumerate((3, 5))
    ]
    env = PlaylistEnv(sessions, SequentialResponse(model), cfg, LAYOUT)
    features = SequentialAgentFeatures(model, cfg.pool_size)
    obs, _ = env.reset(seed=0, options={"session": sessions[0]})
    env.step(1)
    preds, state = features(obs, env.state())
    assert preds.shape == (5, len(PREDICTION_COLUMNS))
    assert not preds[[1, 3, 4]].any() and (preds[[0, 2], :3] > 0).all()  # played / padding slots are zeros
    outcome = env.state().history.outcomes[0]
    np.testing.assert_allclose(state[:4], SequentialResponse(model).state(sessions[0], env.state().history), atol=1e-6)
    assert state[4:].tolist() == [float(outcome == 2), float(outcome == 0)]
    assert features.layout(LAYOUT).context_dim == LAYOUT.context_dim + 4 + 2

    agent = train_agent(env, cfg, features=features)
    assert agent.q.n_predictions == len(PREDICTION_COLUMNS)
    per = run_sessions(env, DQNPolicy(agent.q, features=features), sessions, seed=1)
    assert (per["session_length"] >= 1).all()


def test_quit_prior_prices_the_termination_chance_into_the_reward_prior() -> None:
    from spotrec.rl.q_network import QNetwork

    q = QNetwork(
        LAYOUT,
        [4],
        reward_prior=(1.0, 0.3, -0.5),
        action_inputs="predictions",
        n_predictions=4,
        quit_prior=-1.0,
    )
    # (p_complete, p_skip, p_listen, p_end) for two candidates; the residual starts at zero.
    probs = torch.tensor([[[0.5, 0.3, 0.7, 0.2], [0.5, 0.3, 0.7, 0.0]]])
    got = q(torch.zeros(1, LAYOUT.user_dim), torch.zeros(1, LAYOUT.context_dim), torch.zeros(1, 2, 5), probs)
    # 0.5 * 1 + (0.7 - 0.5) * 0.3 + (1 - 0.7) * -0.5 = 0.41; minus 1 * p_end.
    np.testing.assert_allclose(got.detach().numpy(), [[0.21, 0.41]], atol=1e-6)
    with pytest.raises(ValueError, match="termination column"):
        QNetwork(LAYOUT, [4], reward_prior=(1.0, 0.3, -0.5), n_predictions=3, quit_prior=-1.0)
