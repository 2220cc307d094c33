"""The playlist simulator: gymnasium contract, outcome sampling, reward mapping, no repeats, quitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from spotrec.config import RlConfig
from spotrec.rl.env import (
    OUTCOMES,
    LearnedResponse,
    PlaylistEnv,
    ResponseProbs,
    SessionSpec,
    TableResponse,
    TrueResponse,
    context_vector,
    expected_reward,
    outcome_probabilities,
)
from spotrec.rl.features import FeatureLayout
from spotrec.rl.user_model import LearnedUserModel, UserModelNet

torch.set_num_threads(1)

LAYOUT = FeatureLayout(user=("u_a", "u_b"), track=("t_a", "t_b", "t_c"), context=("c_position", "c_skips"))


def session(n: int, user_id: str = "u1", seed: int = 0) -> SessionSpec:
    rng = np.random.default_rng(seed)
    return SessionSpec(
        user_id=user_id,
        user_features=rng.random(LAYOUT.user_dim),
        track_ids=np.array([f"t{i}" for i in range(n)]),
        track_features=rng.random((n, LAYOUT.track_dim)),
    )


# Always completed / always skipped early / always listened past X but not completed.
ALWAYS = TableResponse({"t0": (1.0, 0.0, 1.0), "t1": (0.0, 1.0, 0.0), "t2": (0.0, 1.0, 1.0)})


def test_env_passes_gymnasium_checker_with_learned_user_model() -> None:
    cfg = RlConfig(pool_size=6, playlist_length=4, user_model_hidden=[8])
    torch.manual_seed(0)
    model = LearnedUserModel(net=UserModelNet(LAYOUT, cfg.user_model_hidden), layout=LAYOUT, cfg=cfg)
    # Pools of different sizes (padded to 6) for different users.
    env = PlaylistEnv([session(3, "u1", 1), session(6, "u2", 2)], LearnedResponse(model), cfg, LAYOUT)
    check_env(env, skip_render_check=True)


def test_reset_pads_pool_and_masks_padding() -> None:
    cfg = RlConfig(pool_size=5, max_position=50)
    spec = session(3)
    env = PlaylistEnv([spec], ALWAYS, cfg, LAYOUT)
    obs, info = env.reset(seed=0)
    assert info == {"user_id": "u1"}
    assert obs["mask"].tolist() == [1, 1, 1, 0, 0]
    np.testing.assert_array_equal(obs["pool"][:3], spec.track_features)
    np.testing.assert_array_equal(obs["pool"][3:], np.zeros((2, 3)))
    np.testing.assert_allclose(obs["context"], [1 / 50, 0.0])
    assert env.observation_space.contains(obs)


def test_step_rewards_follow_the_mapping_and_tracks_never_repeat() -> None:
    cfg = RlConfig(
        pool_size=4, playlist_length=4, reward_complete=1.0, reward_listen=0.25, reward_skip=-0.5, quit_after_skips=9
    )
    env = PlaylistEnv([session(3)], ALWAYS, cfg, LAYOUT)
    env.reset(seed=0)
    steps = [env.step(a) for a in (2, 0, 0, 1)]
    assert [(s[1], s[4]["outcome"], s[4]["track_id"]) for s in steps] == [
        (0.25, "listen", "t2"),
        (1.0, "complete", "t0"),
        (-0.5, "skip", None),  # t0 again: already played, so nothing plays
        (-0.5, "skip", "t1"),
    ]
    assert steps[2][4]["invalid_action"] is True
    assert steps[0][0]["mask"].tolist() == [1, 1, 0, 0]
    # The pool is empty after t1: the session ends.
    assert [s[2] for s in steps] == [False, False, False, True]


def test_session_ends_at_playlist_length() -> None:
    cfg = RlConfig(pool_size=4, playlist_length=2)
    env = PlaylistEnv([session(4)], TableResponse({}, default=(1.0, 0.0, 1.0)), cfg, LAYOUT)
    env.reset(seed=0)
    assert env.step(0)[2] is False
    obs, _, terminated, truncated, _ = env.step(1)
    assert (terminated, truncated) == (True, False)
    np.testing.assert_allclose(obs["context"], [3 / cfg.max_position, 0.0])


def test_listener_quits_after_consecutive_skips() -> None:
    cfg = RlConfig(pool_size=6, playlist_length=6, quit_after_skips=2, quit_probability=1.0, reward_quit=-1.0)
    skip_all = TableResponse({}, default=(0.0, 1.0, 0.0))
    env = PlaylistEnv([session(6)], skip_all, cfg, LAYOUT)
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(0)
    assert (reward, terminated, info["quit"]) == (cfg.reward_skip, False, False)
    np.testing.assert_allclose(obs["context"], [2 / cfg.max_position, 0.1])  # one skip in a row
    _, reward, terminated, _, info = env.step(1)
    assert (reward, terminated, info["quit"]) == (cfg.reward_skip + cfg.reward_quit, True, True)


def test_completion_resets_the_skip_run() -> None:
    cfg = RlConfig(pool_size=4, playlist_length=4, quit_after_skips=2, quit_probability=1.0)
    env = PlaylistEnv([session(3)], ALWAYS, cfg, LAYOUT)
    env.reset(seed=0)
    env.step(1)  # skip
    obs, _, terminated, _, _ = env.step(0)  # complete
    assert not terminated
    assert obs["context"][1] == 0.0
    assert env.state().consecutive_skips == 0
    assert env.state().available.tolist() == [False, False, True]


def test_outcomes_are_sampled_with_the_model_probabilities() -> None:
    cfg = RlConfig(pool_size=1, playlist_length=1)
    # P(complete) 0.2, P(listen > X) 0.7 -> complete 0.2, listen only 0.5, early skip 0.3.
    env = PlaylistEnv([session(1)], TableResponse({"t0": (0.2, 0.3, 0.7)}), cfg, LAYOUT)
    counts = {"complete": 0, "listen": 0, "skip": 0}
    env.reset(seed=123)
    for _ in range(4000):
        env.reset()
        counts[env.step(0)[4]["outcome"]] += 1
    assert counts["complete"] / 4000 == pytest.approx(0.2, abs=0.03)
    assert counts["listen"] / 4000 == pytest.approx(0.5, abs=0.03)
    assert counts["skip"] / 4000 == pytest.approx(0.3, abs=0.03)


def test_outcome_distribution_and_expected_reward() -> None:
    probs = ResponseProbs(p_complete=np.array([0.2, 0.6]), p_skip=np.array([0.3, 0.1]), p_listen=np.array([0.7, 0.5]))
    # The second row's P(listen) < P(complete) is lifted to P(complete): completing implies listening.
    np.testing.assert_allclose(outcome_probabilities(probs), [[0.2, 0.5, 0.3], [0.6, 0.0, 0.4]])
    cfg = RlConfig(reward_complete=1.0, reward_listen=0.5, reward_skip=-1.0)
    np.testing.assert_allclose(expected_reward(probs, cfg), [0.2 + 0.25 - 0.3, 0.6 - 0.4])


def test_context_vector_matches_the_training_features() -> None:
    cfg = RlConfig(max_position=20)
    np.testing.assert_allclose(context_vector(5, 3, cfg), [0.25, 0.3])
    np.testing.assert_allclose(context_vector(40, 25, cfg), [1.0, 1.0])


def test_reset_with_options_starts_that_session() -> None:
    cfg = RlConfig(pool_size=4)
    env = PlaylistEnv([session(2, "u1")], ALWAYS, cfg, LAYOUT)
    _, info = env.reset(seed=0, options={"session": session(4, "u9")})
    assert info["user_id"] == "u9"
    with pytest.raises(ValueError, match=r"1\.\.4"):
        env.reset(options={"session": session(5, "u9")})


def test_true_response_wraps_the_synthetic_ground_truth() -> None:
    import pandas as pd

    from spotrec.synth.response import ResponseModel
    from spotrec.synth.truth import GroundTruth

    users = pd.DataFrame(
        {"user_id": ["u1"], "taste_group": [0], "taste_vector": [np.array([1.0, 0.0])], "activity": [1.0]}
    )
    tracks = pd.DataFrame(
        {
            "track_id": ["t0", "t1"],
            "artist_id": ["a", "a"],
            "album_id": ["b", "b"],
            "taste_group": [0, 1],
            "taste_vector": [np.array([1.0, 0.0]), np.array([0.0, 1.0])],
            "popularity": [0.5, 0.1],
            "zipf_weight": [1.0, 1.0],
            "duration_ms": [200_000, 100_000],
        }
    )
    model = ResponseModel()
    truth = TrueResponse(GroundTruth(users, tracks, model))
    got = truth.probabilities(session(2), np.array([1, 0]), position=3, consecutive_skips=1)
    want = model.probabilities(np.array([0.0, 1.0]), np.array([0.1, 0.5]), 2, 1, np.array([100_000.0, 200_000.0]))
    np.testing.assert_allclose(got.p_complete, want["p_complete"])
    np.testing.assert_allclose(got.p_skip, want["p_skip"])
    np.testing.assert_allclose(got.p_listen, want["p_listen_gt_x"])
    assert got.p_quit_after is not None
    # Marginalising the conditional quit chances over skip / no skip gives the truth's p_quit.
    marginal = want["p_skip"] * got.p_quit_after[:, 2] + (1 - want["p_skip"]) * got.p_quit_after[:, 0]
    np.testing.assert_allclose(marginal, want["p_quit"])
    # The per-session lookup cache follows the session asked about: same ids in the other order, then back.
    swapped = SessionSpec("u1", np.zeros(LAYOUT.user_dim), np.array(["t1", "t0"]), np.zeros((2, LAYOUT.track_dim)))
    np.testing.assert_allclose(truth.probabilities(swapped, np.array([0]), 3, 1).p_skip, want["p_skip"][:1])
    again = truth.probabilities(session(2), np.array([0]), position=3, consecutive_skips=1)
    np.testing.assert_allclose(again.p_skip, want["p_skip"][1:])
    # batch() (test events) agrees with the per-session path.
    rows = truth.batch(["u1", "u1"], ["t1", "t0"], np.array([3, 3]), np.array([1, 1]))
    np.testing.assert_allclose(rows.p_complete, want["p_complete"])


def test_sequential_true_response_rebuilds_the_session_state_from_the_history() -> None:
    import pandas as pd

    from spotrec.rl.env import History
    from spotrec.rl.policies import GreedyUserModelPolicy
    from spotrec.synth.response import ResponseModel
    from spotrec.synth.truth import GroundTruth

    users = pd.DataFrame(
        {"user_id": ["u1"], "taste_group": [0], "taste_vector": [np.array([1.0, 0.0])], "activity": [1.0]}
    )
    vecs = [np.array([1.0, 0.0]), np.array([0.6, 0.8]), np.array([0.0, 1.0])]
    tracks = pd.DataFrame(
        {
            "track_id": ["t0", "t1", "t2"],
            "artist_id": ["a", "a", "b"],
            "album_id": ["x", "x", "y"],
            "taste_group": [0, 0, 1],
            "taste_vector": vecs,
            "popularity": [0.5, 0.1, 0.9],
            "zipf_weight": [1.0, 1.0, 1.0],
            "duration_ms": [200_000, 100_000, 150_000],
        }
    )
    model = ResponseModel(coherence_weight=2.0, artist_fatigue_weight=0.4, patience_weight=1.5)
    truth = TrueResponse(GroundTruth(users, tracks, model))
    assert truth.sequential
    spec = session(3)
    # Played t0 (completed), then t2 (skipped); now ask about t1 at position 3 after one skip.
    got = truth.probabilities(spec, np.array([1]), 3, 1, history=History((0, 2), (False, True)))
    s = model.satisfaction_after(model.satisfaction_after(0.0, 1.0, False), 0.0, True)  # t2: affinity 0, artist b
    want = model.probabilities(0.6, 0.1, 2, 1, 100_000.0, distance=1.0 - 0.8, artist_repeats=1, satisfaction=s)
    np.testing.assert_allclose(got.p_skip, want["p_skip"])
    np.testing.assert_allclose(got.p_complete, want["p_complete"])
    # The env hands the history over: its steps match the truth asked directly with the same history.
    env = PlaylistEnv([spec], truth, RlConfig(pool_size=3, playlist_length=3), LAYOUT)
    env.reset(seed=0)
    _, _, _, _, first = env.step(0)
    if not first["quit"]:
        outcome = OUTCOMES.index(first["outcome"])
        assert env.state().history == History((0,), (first["outcome"] == "skip",), (outcome,))
        _, _, _, _, second = env.step(1)
        direct = truth.probabilities(
            spec,
            np.array([1]),
            2,
            int(first["outcome"] == "skip"),
            history=History((0,), (first["outcome"] == "skip",)),
        )
        assert second["p_skip"] == pytest.approx(float(direct.p_skip[0]))
    # The oracle (greedy on the truth) sees the history through the state too.
    env.reset(seed=1)
    action = GreedyUserModelPolicy(truth, env.cfg, name="oracle").act(env._obs(), env.state(), np.random.default_rng(0))
    assert 0 <= action < 3
    check_env(env, skip_render_check=True)


def test_table_response_quit_after_ends_the_session() -> None:
    trap = TableResponse({"t0": (1.0, 0.0, 1.0)}, default=(1.0, 0.0, 1.0), quit_after={"t0": 1.0})
    env = PlaylistEnv([session(3)], trap, RlConfig(pool_size=3, playlist_length=3), LAYOUT)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(1)
    assert not terminated and reward == 1.0
    _, reward, terminated, _, info = env.step(0)
    assert terminated and info["quit"] and reward == pytest.approx(1.0 + env.cfg.reward_quit)
