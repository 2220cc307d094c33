"""AH-DQN agent, baseline policies and the simulation evaluation."""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pyspark.sql import SparkSession

from spotrec.config import Config, RlConfig
from spotrec.rl.agent import TrainedAgent, load_policy, save_policy, train_agent
from spotrec.rl.dqn import ReplayBuffer, linear_schedule, td_targets
from spotrec.rl.env import LearnedResponse, PlaylistEnv, SessionSpec, TableResponse, expected_reward
from spotrec.rl.evaluate import compare_policies, comparison_table, mean_ci, run_sessions, sim_to_real
from spotrec.rl.features import FeatureLayout
from spotrec.rl.policies import (
    DQNPolicy,
    GreedyUserModelPolicy,
    PopularityPolicy,
    RandomPolicy,
    ScorePolicy,
    plan_playlist,
)
from spotrec.rl.pools import candidate_pools, session_spec
from spotrec.rl.q_network import MASKED_Q, QNetwork, expected_reward_torch, greedy_action, obs_tensors, q_network
from spotrec.rl.user_model import SKIPPED, LearnedUserModel, UserModelNet
from spotrec.steps.rl import run_playlists
from spotrec.storage import Storage
from spotrec.tables import (
    MODEL_METRICS,
    RL_PLAYLISTS,
    SILVER_EVENTS,
    TRACK_FACTORS,
    TRACKS,
    USER_FACTORS,
    USER_MODEL_METRICS,
)

torch.set_num_threads(1)

LAYOUT = FeatureLayout(user=("u_a",), track=("t_energy", "t_b"), context=("c_position", "c_skips"))


# --- known answer: never play the planted always-skipped track ------------------------------------------


class EnergyRule:
    """Tracks with energy > 0.8 are always skipped early; every other track is always completed."""

    def probabilities(self, session: SessionSpec, candidates: np.ndarray, position: int, consecutive_skips: int):
        from spotrec.rl.env import ResponseProbs

        bad = session.track_features[candidates, 0] > 0.8
        return ResponseProbs(
            p_complete=np.where(bad, 0.0, 1.0), p_skip=np.where(bad, 1.0, 0.0), p_listen=np.where(bad, 0.0, 1.0)
        )


def planted_session(rng: np.random.Generator) -> SessionSpec:
    """Five candidates: four good ones (energy < 0.7) and one always-skipped (energy > 0.85), shuffled."""
    energy = np.concatenate([rng.uniform(0.0, 0.7, 4), rng.uniform(0.85, 1.0, 1)])
    order = rng.permutation(5)
    feats = np.stack([energy, rng.random(5)], axis=1)[order]
    return SessionSpec(
        user_id=f"u{rng.integers(100)}",
        user_features=rng.random(1),
        track_ids=np.array([f"t{i}" for i in range(5)]),
        track_features=feats,
    )


def test_agent_learns_never_to_play_the_always_skipped_track(tmp_path) -> None:
    cfg = RlConfig(
        pool_size=5,
        playlist_length=3,
        episodes=300,
        learning_starts=64,
        batch_size=32,
        target_update_interval=50,
        q_hidden=[32, 32],
        q_lr=3e-3,
        exploration_fraction=0.6,
        quit_after_skips=99,
        log_every=100,
        seed=5,
    )
    env = PlaylistEnv(planted_session, EnergyRule(), cfg, LAYOUT)
    agent = train_agent(env, cfg)
    assert len(agent.history) == cfg.episodes

    rng = np.random.default_rng(99)
    test_sessions = [planted_session(rng) for _ in range(50)]
    policy = DQNPolicy(agent.q)
    per_session = run_sessions(env, policy, test_sessions, seed=1)
    # Three good tracks are always available, so the optimum completes all three.
    assert per_session["skip_rate"].max() == 0.0
    assert per_session["session_reward"].min() == pytest.approx(3 * cfg.reward_complete)
    # A random policy does play it (3 of 5 picks): the test can fail.
    random_rewards = run_sessions(env, RandomPolicy(), test_sessions, seed=1)["session_reward"]
    assert random_rewards.mean() < 3 * cfg.reward_complete - 0.5

    path = save_policy(agent, None, tmp_path / "policy")
    loaded, user_model = load_policy(path)
    assert user_model is None and loaded.version == agent.version
    obs, _ = env.reset(seed=3, options={"session": test_sessions[0]})
    assert greedy_action(loaded.q, obs) == greedy_action(agent.q, obs)


# --- known answer: hold back the trap track (completed, but the listener leaves right after it) -----------


class TrapRule:
    """The energy > 0.8 track is always completed, then the listener always leaves; the others are always
    listened past X and completed with chance 0.7 (expected reward 0.79 < 1), and never end the session."""

    def probabilities(self, session: SessionSpec, candidates: np.ndarray, position: int, consecutive_skips: int):
        from spotrec.rl.env import ResponseProbs

        trap = session.track_features[candidates, 0] > 0.8
        quit_after = np.repeat(trap.astype(float)[:, None], 3, axis=1)
        return ResponseProbs(
            p_complete=np.where(trap, 1.0, 0.7),
            p_skip=np.zeros(len(candidates)),
            p_listen=np.ones(len(candidates)),
            p_quit_after=quit_after,
        )


def test_agent_learns_to_hold_back_the_trap_track_that_greedy_plays() -> None:
    cfg = RlConfig(
        pool_size=5,
        playlist_length=4,
        episodes=300,
        learning_starts=64,
        batch_size=32,
        target_update_interval=50,
        q_hidden=[32, 32],
        q_lr=3e-3,
        gamma=0.9,
        exploration_fraction=0.6,
        reward_quit=0.0,
        log_every=100,
        seed=5,
    )
    env = PlaylistEnv(planted_session, TrapRule(), cfg, LAYOUT)
    agent = train_agent(env, cfg)
    rng = np.random.default_rng(99)
    test_sessions = [planted_session(rng) for _ in range(50)]
    greedy = run_sessions(env, GreedyUserModelPolicy(TrapRule(), cfg), test_sessions, seed=1)
    dqn = run_sessions(env, DQNPolicy(agent.q), test_sessions, seed=1)
    # Greedy takes the trap's sure completion first and the session ends after one track.
    assert greedy["session_length"].max() == 1 and greedy["session_reward"].mean() == pytest.approx(1.0)
    # The agent plays the four others (0.79 expected each): every session runs to its full length.
    assert dqn["session_length"].min() == cfg.playlist_length
    assert dqn["session_reward"].mean() > 2.5


# --- double-DQN targets against hand-computed values ---------------------------------------------


def linear_q(weight: float) -> QNetwork:
    """Q(state, track) = weight * track energy (no hidden layer, everything else weighted 0)."""
    q = QNetwork(LAYOUT, hidden=[])
    with torch.no_grad():
        lin = q.mlp[0]
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[0, LAYOUT.user_dim + LAYOUT.context_dim] = weight
    return q


def test_td_targets_double_and_plain_dqn() -> None:
    online, target = linear_q(1.0), linear_q(-1.0)
    batch = {
        "user": torch.zeros(2, 1),
        "pool": torch.tensor([[[0.2, 0.0], [0.9, 0.0], [0.5, 0.0]], [[0.3, 0.0], [0.4, 0.0], [0.0, 0.0]]]),
        "next_context": torch.zeros(2, 2),
        "next_mask": torch.tensor([[True, False, True], [False, False, False]]),
        "reward": torch.tensor([1.0, 2.0]),
        "done": torch.tensor([0.0, 1.0]),
    }
    # Double DQN: the online net picks the highest-energy playable track (0.5), the target values it -0.5.
    np.testing.assert_allclose(td_targets(online, target, batch, 0.9, double_dqn=True), [1.0 - 0.9 * 0.5, 2.0])
    # Plain DQN: the target net's own max over playable tracks is -0.2.
    np.testing.assert_allclose(td_targets(online, target, batch, 0.9, double_dqn=False), [1.0 - 0.9 * 0.2, 2.0])


def test_q_network_masks_and_scores_any_pool_size() -> None:
    q = linear_q(2.0)
    user, ctx = torch.zeros(1, 1), torch.zeros(1, 2)
    for n in (2, 7):
        pool = torch.rand(1, n, 2)
        assert q(user, ctx, pool).shape == (1, n)
    pool = torch.tensor([[[0.1, 0.0], [0.8, 0.0], [0.3, 0.0]]])
    masked = q.masked(user, ctx, pool, torch.tensor([[True, False, True]]))
    np.testing.assert_allclose(masked[0].tolist(), [0.2, MASKED_Q, 0.6], rtol=1e-6)
    obs = {"user": np.zeros(1), "context": np.zeros(2), "pool": pool[0].numpy(), "mask": np.array([1, 0, 1])}
    assert greedy_action(q, obs) == (2, pytest.approx(0.6))


def test_q_network_sees_the_frozen_user_model_predictions() -> None:
    torch.manual_seed(0)
    um = UserModelNet(LAYOUT, [4])
    q = QNetwork(LAYOUT, hidden=[], user_model=um)
    lin = q.mlp[0]
    assert lin.in_features == LAYOUT.user_dim + LAYOUT.context_dim + LAYOUT.track_dim + 3
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[0, -3 + SKIPPED] = -1.0  # Q = -P(skip)
    user, ctx, pool = torch.rand(2, 1), torch.rand(2, 2), torch.rand(2, 3, 2)
    expected = -torch.sigmoid(um(user.unsqueeze(1).expand(-1, 3, -1), pool, ctx.unsqueeze(1).expand(-1, 3, -1)))
    torch.testing.assert_close(q(user, ctx, pool), expected[..., SKIPPED])
    assert not any(p.requires_grad for p in um.parameters())


def test_reward_prior_q_starts_as_greedy_on_the_user_model(tmp_path) -> None:
    """Q = user model's expected immediate reward + a zero-initialised residual: before training the agent is
    the greedy-on-user-model policy, with Q equal to the env's expected reward for every candidate."""
    torch.manual_seed(3)
    cfg = RlConfig(pool_size=6, user_model_hidden=[4], q_hidden=[8, 8])
    um = LearnedUserModel(net=UserModelNet(LAYOUT, cfg.user_model_hidden), layout=LAYOUT, cfg=cfg)
    with torch.no_grad():  # spread the heads so the candidates' expected rewards clearly differ
        for p in um.net.parameters():
            p.mul_(4.0)
    q = q_network(LAYOUT, cfg, copy.deepcopy(um.net))  # the default: prior + dueling + prediction inputs
    assert q.reward_prior is not None and q.value is not None and q.action_inputs == "predictions"
    rng = np.random.default_rng(0)
    spec = SessionSpec(
        user_id="u1", user_features=rng.random(1), track_ids=np.array(list("abcdef")), track_features=rng.random((6, 2))
    )
    env = PlaylistEnv([spec], LearnedResponse(um), cfg, LAYOUT)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(0)  # position 2, track a gone
    skips = env.state().consecutive_skips
    probs = LearnedResponse(um).probabilities(spec, np.arange(6), position=2, consecutive_skips=skips)
    expected = expected_reward(probs, cfg)
    got = q(*obs_tensors(obs)[:3])[0].detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.ptp(expected[1:]) > 0.1
    greedy = GreedyUserModelPolicy(LearnedResponse(um), cfg).act(obs, env.state(), rng)
    assert greedy_action(q, obs)[0] == greedy == 1 + int(np.argmax(expected[1:]))
    # Probabilities cached by the caller (as the replay buffer keeps them) give the same values.
    user, ctx, pool = obs_tensors(obs)[:3]
    torch.testing.assert_close(q(user, ctx, pool, q.user_probs(user, ctx, pool)), q(user, ctx, pool))
    # The residual is what training changes; the prior stays frozen with the user model.
    trainable = {n for n, p in q.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("mlp.", "value.")) for n in trainable)

    # The checkpoint keeps the prior: a reloaded policy gives the same Q values.
    agent = TrainedAgent(q=q, layout=LAYOUT, cfg=cfg, version="ahdqn-test")
    loaded, _ = load_policy(save_policy(agent, um, tmp_path / "policy"))
    assert loaded.q.reward_prior is not None
    np.testing.assert_allclose(loaded.q(*obs_tensors(obs)[:3])[0].detach().numpy(), got, rtol=1e-6)


def test_session_features_see_the_session_so_far_and_survive_the_checkpoint(tmp_path) -> None:
    """The agent's session features: the MLP's predictions plus each candidate's distances to the plays so
    far (hand-computed on two directions of the centred track features) and the session's skip / completion
    fractions; a checkpoint rebuilds them, and the planned playlist is the same before and after."""
    from spotrec.rl.env import History, SessionState
    from spotrec.rl.planning import SESSION_PREDICTION_COLUMNS, SessionAgentFeatures

    torch.manual_seed(0)
    cfg = RlConfig(pool_size=4, playlist_length=3, user_model_hidden=[4], q_hidden=[8])
    um = LearnedUserModel(net=UserModelNet(LAYOUT, cfg.user_model_hidden), layout=LAYOUT, cfg=cfg)
    # Two tracks along (1, 0) and two along (0, 1) around the training mean (0.5, 0.5).
    feats = np.array([[1.5, 0.5], [1.0, 0.5], [0.5, 1.5], [0.5, 2.5]])
    features = SessionAgentFeatures.fit(um, LAYOUT, np.array([[0.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(features.centre, [0.5, 0.5])
    spec = SessionSpec(user_id="u1", user_features=np.zeros(1), track_ids=np.array(list("abcd")), track_features=feats)
    played = History(played=(0,), skipped=(True,), outcomes=(2,))  # a, skipped
    state = SessionState(
        spec, position=2, consecutive_skips=1, available=np.array([False, True, True, True]), history=played
    )
    preds, state_features = features({"mask": state.available}, state)
    assert preds.shape == (4, len(SESSION_PREDICTION_COLUMNS))
    assert not preds[0].any()  # played: no features
    probs = LearnedResponse(um).probabilities(spec, np.array([1, 2, 3]), 2, 1)
    np.testing.assert_allclose(
        preds[1:, :3], np.column_stack([probs.p_complete, probs.p_skip, probs.p_listen]), rtol=1e-6
    )
    # b points the way a does (distance 0: a near-duplicate); c and d are orthogonal to it (distance 1).
    np.testing.assert_allclose(preds[1:, 3:], [[0.0, 0.0, 0.2], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(state_features, [1.0, 0.0])  # one play, skipped

    env = PlaylistEnv([spec], LearnedResponse(um), cfg, LAYOUT)
    agent = train_agent(
        env, cfg.model_copy(update={"episodes": 3, "learning_starts": 1, "batch_size": 2}), features=features
    )
    before = plan_playlist(agent.q, um, spec, cfg, agent.features)
    loaded, loaded_um = load_policy(save_policy(agent, um, tmp_path / "policy"))
    assert isinstance(loaded.features, SessionAgentFeatures)
    after = plan_playlist(loaded.q, loaded_um, spec, cfg, loaded.features)
    assert [t.index for t in before] == [t.index for t in after] and len(before) == 3
    np.testing.assert_allclose([t.q_value for t in before], [t.q_value for t in after], rtol=1e-5)


def test_checkpoints_from_before_the_prior_still_load(tmp_path) -> None:
    """A checkpoint whose config predates q_reward_prior / q_dueling / q_action_inputs loads as it was trained."""
    torch.manual_seed(1)
    cfg = RlConfig(user_model_hidden=[4], q_hidden=[8])
    um = LearnedUserModel(net=UserModelNet(LAYOUT, cfg.user_model_hidden), layout=LAYOUT, cfg=cfg)
    old_q = QNetwork(LAYOUT, cfg.q_hidden, copy.deepcopy(um.net))  # the network those checkpoints hold
    path = save_policy(TrainedAgent(q=old_q, layout=LAYOUT, cfg=cfg, version="ahdqn-old"), um, tmp_path / "p")
    payload = torch.load(path, weights_only=False)
    for key in ("q_reward_prior", "q_dueling", "q_action_inputs"):
        del payload["config"][key]
    torch.save(payload, path)
    loaded, _ = load_policy(path)
    user, ctx, pool = torch.rand(2, 1), torch.rand(2, 2), torch.rand(2, 3, 2)
    torch.testing.assert_close(loaded.q(user, ctx, pool), old_q(user, ctx, pool))


def test_reward_prior_needs_a_user_model() -> None:
    with pytest.raises(ValueError, match="user model"):
        QNetwork(LAYOUT, [4], None, (1.0, 0.3, -0.5))
    with pytest.raises(ValueError, match="user model"):
        QNetwork(LAYOUT, [4], None, action_inputs="predictions")


def test_dueling_prediction_only_q_network_hand_values() -> None:
    """Q = r_hat + V(user, context) + A(context, predictions): set the streams by hand and check the sum."""
    torch.manual_seed(0)
    um = UserModelNet(LAYOUT, [4])
    q = QNetwork(LAYOUT, [], um, (1.0, 0.3, -0.5), dueling=True, action_inputs="predictions")
    assert q.mlp[0].in_features == LAYOUT.context_dim + 3
    # Zero-initialised streams: Q starts as the expected immediate reward alone.
    user, ctx, pool = torch.rand(2, 1), torch.rand(2, 2), torch.rand(2, 3, 2)
    probs = q.user_probs(user, ctx, pool)
    r_hat = expected_reward_torch(probs, torch.tensor([1.0, 0.3, -0.5]))
    torch.testing.assert_close(q(user, ctx, pool), r_hat)
    with torch.no_grad():
        q.value[0].bias.fill_(2.0)  # V = 2
        q.mlp[0].weight[0, LAYOUT.context_dim + SKIPPED] = -3.0  # A = -3 P(skip)
    torch.testing.assert_close(q(user, ctx, pool), r_hat + 2.0 - 3.0 * probs[..., SKIPPED])


def test_replay_buffer_keeps_user_model_probabilities() -> None:
    buf = ReplayBuffer(capacity=4, layout=LAYOUT, pool_size=3, seed=0, with_probs=True)
    obs = {"user": np.zeros(1), "context": np.zeros(2), "pool": np.zeros((3, 2)), "mask": np.ones(3)}
    with pytest.raises(ValueError, match="probs"):
        buf.add(obs, 0, 1.0, obs, False)
    buf.add(obs, 0, 1.0, obs, False, np.full((3, 3), 0.25), np.full((3, 3), 0.75))
    batch = buf.sample(2)
    assert batch["probs"].shape == (2, 3, 3) and batch["next_probs"].shape == (2, 3, 3)
    assert float(batch["probs"].max()) == 0.25 and float(batch["next_probs"].min()) == 0.75


def test_replay_buffer_overwrites_oldest() -> None:
    buf = ReplayBuffer(capacity=2, layout=LAYOUT, pool_size=3, seed=0)
    obs = {"user": np.zeros(1), "context": np.zeros(2), "pool": np.zeros((3, 2)), "mask": np.ones(3)}
    for r in (1.0, 2.0, 3.0):
        buf.add(obs, 0, r, obs, False)
    assert buf.size == 2
    assert sorted(buf.reward.tolist()) == [2.0, 3.0]
    assert buf.sample(5)["reward"].shape == (5,)


def test_linear_schedule() -> None:
    assert linear_schedule(1.0, 0.1, 10, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 10, 5) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 10, 50) == pytest.approx(0.1)


# --- baselines: exact orders on hand-built pools -----------------------------------------------------


def order_played(policy, spec: SessionSpec, response=None) -> list[str]:
    cfg = RlConfig(pool_size=4, playlist_length=3, quit_after_skips=99)
    env = PlaylistEnv([spec], response or TableResponse({}, default=(1.0, 0.0, 1.0)), cfg, LAYOUT)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    played, done = [], False
    while not done:
        obs, _, done, _, info = env.step(policy.act(obs, env.state(), rng))
        played.append(info["track_id"])
    return played


SPEC = SessionSpec(
    user_id="u1",
    user_features=np.zeros(1),
    track_ids=np.array(["a", "b", "c"]),
    track_features=np.zeros((3, 2)),
    popularity=np.array([0.2, 0.9, 0.5]),
    scores=np.array([3.0, 1.0, 2.0]),
)


def test_popularity_and_score_baselines_play_in_their_order() -> None:
    assert order_played(PopularityPolicy(), SPEC) == ["b", "c", "a"]
    assert order_played(ScorePolicy(), SPEC) == ["a", "c", "b"]


def test_greedy_user_model_plays_highest_expected_reward_first() -> None:
    cfg = RlConfig()
    # Expected rewards (1, 0.3, -0.5 mapping): a 0.1 - 0.45 < c 0.5*1 + 0.2*0.3 - 0.15 < b 0.9.
    response = TableResponse({"a": (0.1, 0.9, 0.1), "b": (0.9, 0.1, 1.0), "c": (0.5, 0.3, 0.7)})
    assert order_played(GreedyUserModelPolicy(response, cfg), SPEC, response) == ["b", "c", "a"]


def test_random_policy_plays_each_candidate_once() -> None:
    assert sorted(order_played(RandomPolicy(), SPEC)) == ["a", "b", "c"]


# --- evaluation ------------------------------------------------------------------------------------


def test_mean_ci_hand_values() -> None:
    mean, low, high = mean_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    half = 1.959963984540054 * math.sqrt(5 / 3) / 2
    assert (mean, low, high) == pytest.approx((2.5, 2.5 - half, 2.5 + half))
    assert mean_ci(np.array([7.0])) == (7.0, 7.0, 7.0)


def test_compare_policies_in_two_worlds() -> None:
    cfg = RlConfig(pool_size=4, playlist_length=2, quit_after_skips=99)
    # In the "learned" world track a is great; in the "true" world it is always skipped.
    learned = TableResponse({"a": (1.0, 0.0, 1.0)}, default=(0.0, 1.0, 0.0))
    true = TableResponse({"a": (0.0, 1.0, 0.0)}, default=(0.0, 1.0, 0.0))
    got = compare_policies(
        [ScorePolicy()], {"learned_sim": learned, "true": true}, [SPEC, SPEC], cfg, LAYOUT, seed=0
    ).set_index(["world", "metric"])
    # Score order plays a then c: learned 1.0 - 0.5; true -0.5 - 0.5. No variance -> zero-width intervals.
    assert got.loc[("learned_sim", "session_reward"), ["mean", "ci_low", "ci_high"]].tolist() == [0.5, 0.5, 0.5]
    assert got.loc[("true", "session_reward"), "mean"] == -1.0
    assert got.loc[("learned_sim", "completion_rate"), "mean"] == 0.5
    assert got.loc[("true", "skip_rate"), "mean"] == 1.0
    assert got.loc[("true", "session_length"), "mean"] == 2.0
    assert set(got["policy"]) == {"als_score"}
    assert (got["n"] == 2).all()


def test_comparison_table_lists_policies_best_first() -> None:
    cfg = RlConfig(pool_size=4, playlist_length=2, quit_after_skips=99)
    learned = TableResponse({"a": (1.0, 0.0, 1.0)}, default=(0.0, 1.0, 0.0))
    true = TableResponse({}, default=(0.0, 1.0, 0.0))
    evaluation = compare_policies(
        [PopularityPolicy(), ScorePolicy()], {"learned_sim": learned, "true": true}, [SPEC], cfg, LAYOUT, seed=0
    )
    lines = comparison_table(evaluation).splitlines()
    assert lines[0] == "policy comparison, 1 sessions per policy and world"
    head = ["reward", "[95%", "CI]", "skip", "length"]
    assert lines[1].split() == ["policy", "learned_sim", *head, "true", *head]
    # Score order plays a (completed, 1.0) then c (skipped, -0.5); popularity plays b then c: -1.0.
    learned_cells = ["0.50", "[0.50,", "0.50]", "0.500", "2.00"]
    true_cells = ["-1.00", "[-1.00,", "-1.00]", "1.000", "2.00"]
    assert lines[2].split() == ["als_score", *learned_cells, *true_cells]
    assert lines[3].split()[:2] == ["popularity", "-1.00"]


def test_sim_to_real_rank_correlation_and_optimism() -> None:
    rows = [
        {"policy": p, "world": w, "metric": "session_reward", "mean": m}
        for p, sim, real in (("a", 3.0, 1.0), ("b", 2.0, 2.0), ("c", 1.0, 0.5), ("d", 0.0, -1.0))
        for w, m in (("sim", sim), ("real", real))
    ]
    evaluation = pd.DataFrame(rows)
    rho, gap = sim_to_real(evaluation, "sim", "real")
    # Ranks sim (4, 3, 2, 1) vs real (3, 4, 2, 1): 1 - 6 * (1 + 1) / (4 * 15) = 0.8.
    assert rho == pytest.approx(0.8)
    assert gap == pytest.approx((2.0 + 0.0 + 0.5 + 1.0) / 4)
    assert sim_to_real(evaluation[evaluation["policy"] != "d"].iloc[:4], "sim", "real") is None  # 2 policies
    assert sim_to_real(evaluation, "sim", "absent") is None


# --- the Spark step: pools, playlists on executors, tables ------------------------------------------

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors need this interpreter's torch / pandas


def _catalogue(spark: SparkSession, n: int):
    rows = [(f"t{i:02d}", [float(i) / n, 0.5], float(i) / n) for i in range(n)]
    return spark.createDataFrame(rows, "track_id string, track_features array<float>, popularity double")


def test_candidate_pools_put_scored_tracks_first_and_differ_per_session(spark: SparkSession) -> None:
    cfg = RlConfig(pool_size=5, pool_from_scores=2, seed=1)
    users = spark.createDataFrame([("u1",), ("u2",)], "user_id string")
    scores = spark.createDataFrame(
        [("u1", "t07", 9.0), ("u1", "t03", 5.0), ("u1", "t01", 1.0)], "user_id string, track_id string, score double"
    )
    pools = candidate_pools(users, _catalogue(spark, 40), cfg, ["s1", "s2"], scores).toPandas()
    assert sorted(zip(pools["user_id"], pools["session"])) == [("u1", "s1"), ("u1", "s2"), ("u2", "s1"), ("u2", "s2")]
    for row in pools.to_dict("records"):
        ids = list(row["candidate_ids"])
        assert len(ids) == 5 and len(set(ids)) == 5
        # Features travel with their track: t07 -> [0.175, 0.5].
        for tid, feats, pop in zip(ids, row["candidate_features"], row["candidate_popularity"]):
            assert feats.tolist() == pytest.approx([int(tid[1:]) / 40, 0.5])
            assert pop == pytest.approx(int(tid[1:]) / 40)
        if row["user_id"] == "u1":
            assert ids[:2] == ["t07", "t03"]
            assert list(row["candidate_scores"][:2]) == [9.0, 5.0]
        else:
            assert all(s is None or np.isnan(s) for s in row["candidate_scores"])
    u2 = pools[pools["user_id"] == "u2"].sort_values("session")["candidate_ids"].map(list).tolist()
    assert u2[0] != u2[1]
    spec = session_spec(pools[pools["user_id"] == "u1"].iloc[0].to_dict() | {"user_features": [0.0]})
    # Unscored candidates rank below every scored one for the score baseline.
    assert spec.scores is not None and spec.scores[:2].tolist() == [9.0, 5.0] and (spec.scores[2:] < 5.0).all()


def _tiny_world(spark: SparkSession, storage: Storage) -> None:
    """6 users x 3 sessions x 5 plays over 12 tracks; users u0-u2 skip every track with energy > 0.5."""
    rng = np.random.default_rng(0)
    tracks = [
        (f"t{i:02d}", None, None, None, None, None, 180_000, 0.5, 0.5, i / 11, 0.5, 120.0, "test") for i in range(12)
    ]
    storage.overwrite(TRACKS, spark.createDataFrame(tracks, TRACKS.schema))
    events, t0 = [], dt.datetime(2026, 9, 7, 8, 0)
    for u in range(6):
        for s in range(3):
            for pos, ti in enumerate(rng.choice(12, 5, replace=False), start=1):
                ts = t0 + dt.timedelta(days=s, hours=u, minutes=4 * pos)
                skip = bool(u < 3 and ti / 11 > 0.5)
                ms = 5_000 if skip else 180_000
                event = (f"e{u}-{s}-{pos}", f"u{u}", f"t{ti:02d}", ts, ms, 180_000, None, None, None, None, skip)
                events.append((*event, None, None, f"u{u}-s{s}", pos, "test", "f", "r", ts.date()))
    storage.overwrite(SILVER_EVENTS, spark.createDataFrame(events, SILVER_EVENTS.schema))
    # Rank-2 ALS factors for all users but u5 and all tracks but t11 (those get zero vectors).
    users = [(u, f"u{u}", [float(u < 3), float(u >= 3)], "als-1") for u in range(5)]
    storage.overwrite(USER_FACTORS, spark.createDataFrame(users, USER_FACTORS.schema))
    tracks_f = [(i, f"t{i:02d}", [1.0 - i / 11, i / 11], "als-1") for i in range(11)]
    storage.overwrite(TRACK_FACTORS, spark.createDataFrame(tracks_f, TRACK_FACTORS.schema))


@pytest.mark.slow  # a whole step end to end: in make test, not make test-fast
def test_run_playlists_end_to_end(spark: SparkSession, storage: Storage, config: Config) -> None:
    _tiny_world(spark, storage)
    rl = RlConfig(
        user_model_hidden=[8],
        user_model_max_epochs=3,
        validation_fraction=0.3,
        test_fraction=0.3,
        pool_size=6,
        playlist_length=4,
        episodes=20,
        learning_starts=10,
        batch_size=8,
        eval_sessions=6,
        training_users=4,
        q_hidden=[8],
        user_model="gru",  # the MLP is trained and compared too; the GRU drives the simulator
        user_model_gru_hidden=4,
        seed=2,
    )
    result = run_playlists(spark, storage, config, rl, "run-1", session="2026-09-14")

    playlists = storage.read(RL_PLAYLISTS).toPandas()
    assert result.playlists_written == len(playlists) == 6 * 4
    for _, group in playlists.groupby("user_id"):
        assert sorted(group["position"]) == [1, 2, 3, 4]
        assert group["track_id"].nunique() == 4
    assert set(playlists["session"]) == {"2026-09-14"}
    assert set(playlists["policy_version"]) == {result.policy_version}
    assert playlists["predicted_skip"].between(0, 1).all()
    assert Path(result.policy_path).exists()
    agent, user_model = load_policy(result.policy_path)
    assert user_model is not None and user_model.version == result.user_model_version
    # The ALS factors (rank 2) were appended to both blocks.
    assert (agent.layout.user_vector_dim, agent.layout.track_vector_dim) == (2, 2)

    um = storage.read(USER_MODEL_METRICS).toPandas()
    assert set(um["model_version"]) == {result.user_model_version}
    assert {"user_model", "global_rate", "track_rate"} <= set(um["predictor"])

    ops = storage.read(MODEL_METRICS).where("run_id = 'run-1'").toPandas()
    assert {"rl_policy:ah_dqn", "rl_policy:random", "rl_policy:greedy_user_model"} <= set(ops["model"])
    # No ground truth in this world; "training" holds the AH-DQN training curve, "test" the user models.
    assert set(ops["dataset"]) == {"learned_sim", "training", "test"}
    policies = {m for m in ops["model"] if m.startswith("rl_policy:")}
    assert (ops["metric"] == "session_reward_mean").sum() == len(policies)
    assert result.user_model_comparison is not None
    compared = ops[ops["dataset"] == "test"]
    assert set(compared["model"]) == {"rl_user_model:mlp", "rl_user_model:gru"}
    assert {"skipped_auc", "skipped_log_loss", "skipped_ece", "completed_auc"} <= set(compared["metric"])
