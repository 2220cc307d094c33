"""Playlist RL: simulator throughput and AH-DQN time to convergence.

    python benchmarks/rl_bench.py                      # pools of 30 and 100, 3 seeds, DQN vs double DQN
    python benchmarks/rl_bench.py --steps 2000 --seeds 1 --episodes 300   # quick smoke run
    python benchmarks/rl_bench.py --long-term     # MLP vs GRU user model, policies in sim and true listener

1. Simulated steps per second of :class:`~spotrec.rl.env.PlaylistEnv` with a random policy, for
   the learned user model (an MLP of the configured size; its weights do not change the cost) and for the
   ground-truth listener of the synthetic world (:class:`~spotrec.rl.env.TrueResponse` over an
   in-memory ground truth with random taste vectors), per pool size.
2. AH-DQN on a planted problem where the optimum is known: per session a pool of ``pool`` tracks of which
   ``bad`` are always skipped (energy > 0.8 for low-energy listeners, < 0.2 for high-energy ones) and the
   rest always completed, playlists of ``length`` tracks;
   the optimal session reward is ``length * reward_complete``. Every ``eval_every`` episodes the greedy
   policy plays 50 fixed held-out sessions; convergence is the first evaluation at >= 99% of the optimum.
   Reported per variant (plain / double DQN): episodes, environment steps and wall seconds to converge,
   the final greedy reward and the random policy's reward for scale.

3. With ``--policy PATH`` (a checkpoint of ``spotrec rl``, e.g.
   ``warehouse/_artifacts/rl/policy``): that run's training curve on the demo data. Convergence is
   the first episode whose trailing ``--window``-episode mean return reaches 95% of the final window's
   mean (returns are those of the epsilon-greedy behaviour in the learned simulator), with the training
   seconds to get there and in total.

4. With ``--long-term``: the learned-simulator path of issue 12 on an in-memory synthetic world (catalogue,
   users and listener of :mod:`spotrec.synth`, no Spark) with its long-term effects off (the control world,
   today's listener) and on (``--coherence``, ``--fatigue``, ``--patience``). Per world:
   ``--lt-log-sessions`` logged sessions are played against the true listener (half shuffled pools, the
   exploration log; half affinity order with 30% random picks); the MLP and the GRU user model (both with
   the learned termination head) are fitted on 70% of them and compared on 15% held out (AUC, log-loss,
   calibration error per head); AH-DQN is trained for ``--lt-episodes`` episodes in the GRU simulator with
   its own GRU features (:class:`~spotrec.rl.planning.SequentialAgentFeatures`: the session so far in its
   state); then every policy plays the same ``--lt-sessions`` fresh sessions in the learned simulator and
   against the true listener: random, popularity, affinity order (the ALS stand-in), greedy on the MLP,
   greedy on the GRU, greedy on the GRU counting the expected quit reward (diagnostic), the oracle (greedy
   on the true listener, which sees the session so far) and AH-DQN, each with its mean session reward and
   95% CI; and the sim-to-real check, the Spearman correlation of the policies' rewards in the two. Per
   session a pool of ``--lt-pool`` tracks (half from the user's own listening distribution, half from the
   catalogue); the track block is the track's hidden taste vector (stand-in for ALS factors), popularity,
   duration and the user's affinity to it (the recommender's score). ``--lt-worlds long_term`` runs one
   world; ``--lt-direct`` runs the older comparison instead (AH-DQN trained against the true listener, no
   user model; greedy on the myopic true listener).

Single-threaded torch (``torch.set_num_threads(1)``) so numbers compare across machines with other load.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from spotrec.config import RlConfig
from spotrec.rl import agent as agent_mod
from spotrec.rl.env import LearnedResponse, PlaylistEnv, ResponseModel, ResponseProbs, SessionSpec, TrueResponse
from spotrec.rl.evaluate import run_sessions
from spotrec.rl.features import FeatureLayout
from spotrec.rl.policies import DQNPolicy, RandomPolicy
from spotrec.rl.q_network import QNetwork
from spotrec.rl.user_model import LearnedUserModel, UserModelData, UserModelNet


def _random_session(rng: np.random.Generator, layout: FeatureLayout, n: int, n_tracks: int) -> SessionSpec:
    ids = rng.choice(n_tracks, size=n, replace=False)
    return SessionSpec(
        user_id=f"u{rng.integers(100)}",
        user_features=rng.random(layout.user_dim),
        track_ids=np.array([f"t{i}" for i in ids]),
        track_features=rng.random((n, layout.track_dim)),
    )


def _ground_truth(n_users: int, n_tracks: int, seed: int) -> TrueResponse:
    from spotrec.synth.response import ResponseModel as TruthModel
    from spotrec.synth.truth import GroundTruth

    rng = np.random.default_rng(seed)

    def unit(n: int) -> list[np.ndarray]:
        v = rng.normal(size=(n, 16))
        return list(v / np.linalg.norm(v, axis=1, keepdims=True))

    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(n_users)], "taste_vector": unit(n_users)})
    tracks = pd.DataFrame(
        {
            "track_id": [f"t{i}" for i in range(n_tracks)],
            "taste_vector": unit(n_tracks),
            "popularity": rng.random(n_tracks),
            "duration_ms": rng.integers(120_000, 300_000, n_tracks),
        }
    )
    return TrueResponse(GroundTruth(users, tracks, TruthModel()))


def simulator_throughput(steps: int, pools: list[int], seed: int) -> pd.DataFrame:
    layout = FeatureLayout()
    rows = []
    for pool in pools:
        cfg = RlConfig(pool_size=pool, playlist_length=20, seed=seed)
        torch.manual_seed(seed)
        learned = LearnedResponse(
            LearnedUserModel(net=UserModelNet(layout, cfg.user_model_hidden), layout=layout, cfg=cfg)
        )
        worlds: dict[str, ResponseModel] = {
            "learned_user_model": learned,
            "true_listener": _ground_truth(100, 2000, seed),
        }
        rng = np.random.default_rng(seed)
        sessions = [_random_session(rng, layout, pool, 2000) for _ in range(64)]
        for name, response in worlds.items():
            env = PlaylistEnv(sessions, response, cfg, layout)
            policy, prng = RandomPolicy(), np.random.default_rng(seed)
            obs, _ = env.reset(seed=seed)
            started, episodes = time.perf_counter(), 1
            for _ in range(steps):
                obs, _, terminated, truncated, _ = env.step(policy.act(obs, env.state(), prng))
                if terminated or truncated:
                    obs, _ = env.reset()
                    episodes += 1
            secs = time.perf_counter() - started
            rows.append(
                {"world": name, "pool": pool, "steps": steps, "episodes": episodes, "steps_per_s": steps / secs}
            )
    return pd.DataFrame(rows)


class _Planted:
    """Feature 0 is energy, user feature 0 the energy taste (0 low, 1 high).

    Low-energy listeners always skip tracks with energy > 0.8, high-energy listeners tracks with energy < 0.2;
    every other track is completed. A network cannot be right for both kinds of listener by chance.
    """

    def probabilities(
        self, session: SessionSpec, candidates: np.ndarray, position: int, consecutive_skips: int
    ) -> ResponseProbs:
        energy = session.track_features[candidates, 0]
        bad = np.where(session.user_features[0] > 0.5, energy < 0.2, energy > 0.8)
        return ResponseProbs(
            p_complete=np.where(bad, 0.0, 1.0), p_skip=np.where(bad, 1.0, 0.0), p_listen=np.where(bad, 0.0, 1.0)
        )


def _planted_sessions(pool: int, bad: int, layout: FeatureLayout):  # type: ignore[no-untyped-def]
    def draw(rng: np.random.Generator) -> SessionSpec:
        high = bool(rng.random() < 0.5)
        bad_energy = rng.uniform(0.0, 0.15, bad) if high else rng.uniform(0.85, 1.0, bad)
        energy = np.concatenate([rng.uniform(0.25, 0.75, pool - bad), bad_energy])
        feats = rng.random((pool, layout.track_dim))
        feats[:, 0] = energy
        user = rng.random(layout.user_dim)
        user[0] = float(high)
        return SessionSpec(
            user_id="u",
            user_features=user,
            track_ids=np.array([f"t{i}" for i in range(pool)]),
            track_features=feats[rng.permutation(pool)],
        )

    return draw


def convergence(pool: int, bad: int, length: int, episodes: int, eval_every: int, seeds: list[int]) -> pd.DataFrame:
    layout = FeatureLayout(user=("energy_taste", "other"), track=("energy", "other"), context=("c_position", "c_skips"))
    draw = _planted_sessions(pool, bad, layout)
    held_out_rng = np.random.default_rng(12345)
    held_out = [draw(held_out_rng) for _ in range(50)]
    # Warm-up (torch's first backward pass costs about a second), so the first timed run is not penalised.
    warm = RlConfig(pool_size=pool, playlist_length=length, episodes=30, learning_starts=16, log_every=10**9)
    agent_mod.train_agent(PlaylistEnv(draw, _Planted(), warm, layout), warm)
    rows = []
    for double in (False, True):
        for seed in seeds:
            cfg = RlConfig(
                pool_size=pool,
                playlist_length=length,
                episodes=episodes,
                learning_starts=64,
                batch_size=32,
                target_update_interval=50,
                q_hidden=[32, 32],
                q_lr=3e-3,
                exploration_fraction=0.5,
                quit_after_skips=99,
                log_every=10**9,
                double_dqn=double,
                seed=seed,
            )
            optimum = length * cfg.reward_complete
            eval_env = PlaylistEnv(held_out, _Planted(), cfg, layout)
            progress = _train_until_optimal(
                PlaylistEnv(draw, _Planted(), cfg, layout), eval_env, held_out, cfg, eval_every
            )
            converged = "episodes" in progress
            random_reward = run_sessions(eval_env, RandomPolicy(), held_out, seed=1)["session_reward"].mean()
            rows.append(
                {
                    "variant": "double_dqn" if double else "dqn",
                    "seed": seed,
                    "episodes_to_99pct": progress["episodes"] if converged else None,
                    "seconds_to_99pct": progress["seconds"] if converged else None,
                    "final_greedy_reward": progress["final"],
                    "optimum": optimum,
                    "random_reward": random_reward,
                }
            )
    return pd.DataFrame(rows)


def _train_until_optimal(
    env: PlaylistEnv, eval_env: PlaylistEnv, held_out: list[SessionSpec], cfg: RlConfig, eval_every: int
) -> dict[str, float]:
    """Train, evaluating the greedy policy every ``eval_every`` episodes; when did it first reach 99%?"""
    optimum = cfg.playlist_length * cfg.reward_complete
    progress: dict[str, float] = {"final": float("nan"), "eval_seconds": 0.0}
    started = time.perf_counter()

    def evaluate(done: int, q: QNetwork) -> bool:
        if done % eval_every:
            return False
        paused = time.perf_counter()  # time spent evaluating is not training time
        reward = float(run_sessions(eval_env, DQNPolicy(q), held_out, seed=1)["session_reward"].mean())
        progress["final"] = reward
        if "episodes" not in progress and reward >= 0.99 * optimum:
            progress["episodes"] = done
            progress["seconds"] = paused - started - progress["eval_seconds"]
        progress["eval_seconds"] += time.perf_counter() - paused
        return False

    agent_mod.train_agent(env, cfg, on_episode_end=evaluate)
    return progress


def training_curve(policy: str, window: int) -> pd.DataFrame:
    """Convergence of a pipeline-trained AH-DQN from the per-episode history in its checkpoint."""
    agent, _ = agent_mod.load_policy(policy)
    hist = pd.DataFrame(agent.history)
    returns = hist["charts/episodic_return"].rolling(window, min_periods=window).mean()
    final = float(returns.iloc[-1])
    reached = hist.index[returns >= 0.95 * final] if final > 0 else hist.index[returns >= final]
    at = int(reached[0]) if len(reached) else len(hist) - 1
    elapsed = hist.get("time/elapsed_s")
    steps = int(hist["charts/episodic_length"].sum())
    return pd.DataFrame(
        [
            {
                "policy": agent.version,
                "episodes": len(hist),
                "steps": steps,
                "final_mean_return": final,
                "episodes_to_95pct": at + 1,
                "seconds_to_95pct": float(elapsed.iloc[at]) if elapsed is not None else float("nan"),
                "train_seconds": float(elapsed.iloc[-1]) if elapsed is not None else float("nan"),
            }
        ]
    )


def _long_term_world(users: int, artists: int, seed: int, **long_term: float):  # type: ignore[no-untyped-def]
    """An in-memory synthetic world: (GenerateConfig, catalogue, user profiles, TrueResponse)."""
    from spotrec.config import GenerateConfig
    from spotrec.synth.catalogue import build_catalogue
    from spotrec.synth.listeners import user_id, user_profile
    from spotrec.synth.response import ResponseModel as TruthModel
    from spotrec.synth.truth import GroundTruth

    cfg = GenerateConfig(users=users, artists=artists, seed=seed, **long_term)
    cat, tracks = build_catalogue(cfg)
    profiles = [user_profile(u, cat, cfg) for u in range(users)]
    gt_users = pd.DataFrame(
        {"user_id": [user_id(p.user, users) for p in profiles], "taste_vector": [p.vector for p in profiles]}
    )
    gt_tracks = pd.DataFrame(
        {
            "track_id": cat.track_ids,
            "artist_id": tracks["artist_id"].to_numpy(),
            "taste_vector": list(cat.track_vectors),
            "popularity": cat.popularity,
            "duration_ms": cat.duration_ms,
        }
    )
    return cfg, cat, profiles, TrueResponse(GroundTruth(gt_users, gt_tracks, TruthModel.for_world(cfg)))


def _long_term_sessions(  # type: ignore[no-untyped-def]
    cat, profiles, users: int, pool: int, n: int, rng: np.random.Generator, with_score: bool = False
) -> list[SessionSpec]:
    from spotrec.synth.listeners import user_id

    out = []
    for _ in range(n):
        prof = profiles[int(rng.integers(len(profiles)))]
        own = np.unique(np.minimum(np.searchsorted(prof.cdf, rng.random(pool)), cat.n_tracks - 1))[: pool // 2]
        rest = rng.choice(np.setdiff1d(np.arange(cat.n_tracks), own), size=pool - len(own), replace=False)
        ids = np.concatenate([own, rest])
        feats = np.column_stack([cat.track_vectors[ids], cat.popularity[ids], cat.duration_ms[ids] / 600_000.0])
        if with_score:  # the recommender's score as a feature, as the pipeline's ALS factors give it
            feats = np.column_stack([feats, prof.affinity[ids]])
        out.append(
            SessionSpec(
                user_id=user_id(prof.user, users),
                user_features=prof.vector,
                track_ids=cat.track_ids[ids],
                track_features=feats,
                popularity=cat.popularity[ids],
                scores=prof.affinity[ids],
            )
        )
    return out


def long_term_comparison(args: argparse.Namespace) -> pd.DataFrame:
    """Mean session reward [95% CI] per policy against the true listener, control vs long-term world."""
    from spotrec.rl.evaluate import mean_ci
    from spotrec.rl.policies import GreedyUserModelPolicy, PopularityPolicy, ScorePolicy

    worlds = {
        "control": {},
        "long_term": {
            "coherence_weight": args.coherence,
            "artist_fatigue_weight": args.fatigue,
            "patience_weight": args.patience,
        },
    }
    rows = []
    for world, switches in worlds.items():
        _, cat, profiles, truth = _long_term_world(args.lt_users, args.lt_artists, args.seed, **switches)
        _, _, _, myopic = _long_term_world(args.lt_users, args.lt_artists, args.seed)
        d = cat.track_vectors.shape[1]
        layout = FeatureLayout(
            user=tuple(f"u_v{i}" for i in range(d)),
            track=(*(f"t_v{i}" for i in range(d)), "t_popularity", "t_duration"),
            context=("c_position", "c_consecutive_skips"),
        )
        cfg = RlConfig(
            pool_size=args.lt_pool,
            playlist_length=args.lt_length,
            episodes=args.lt_episodes,
            learning_starts=256,
            batch_size=64,
            q_hidden=[64, 64],
            q_user_model_features=False,
            q_reward_prior=False,
            q_dueling=False,
            q_action_inputs="all",
            exploration_fraction=0.5,
            log_every=max(args.lt_episodes // 5, 1),
            seed=args.seed,
        )
        rng = np.random.default_rng(args.seed)
        train = _long_term_sessions(cat, profiles, args.lt_users, args.lt_pool, 2000, rng)
        test = _long_term_sessions(cat, profiles, args.lt_users, args.lt_pool, args.lt_sessions, rng)
        env = PlaylistEnv(train, truth, cfg, layout)
        started = time.perf_counter()
        agent = agent_mod.train_agent(env, cfg)
        train_s = time.perf_counter() - started
        policies = [
            RandomPolicy(),
            PopularityPolicy(),
            ScorePolicy("affinity_order"),
            GreedyUserModelPolicy(myopic, cfg, name="greedy_myopic"),
            GreedyUserModelPolicy(truth, cfg, name="oracle_greedy"),
            DQNPolicy(agent.q),
        ]
        for policy in policies:
            per = run_sessions(env, policy, test, seed=args.seed + 1)
            mean, lo, hi = mean_ci(per["session_reward"].to_numpy())
            rows.append(
                {
                    "world": world,
                    "policy": policy.name,
                    "reward": mean,
                    "ci95": f"[{lo:.2f}, {hi:.2f}]",
                    "length": per["session_length"].mean(),
                    "skip_rate": per["skip_rate"].mean(),
                    "train_s": train_s if policy.name == "ah_dqn" else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def _log_sessions(
    truth: TrueResponse, sessions: list[SessionSpec], cfg: RlConfig, layout: FeatureLayout, seed: int
) -> UserModelData:
    """Logged sessions the learned simulator is fitted on, played against the true listener.

    Half are the exploration log (the pool in random order), half organic (affinity order with a 30% chance
    of a random track per slot); each row records the user and track blocks, the session context, the
    three labels and whether the listener left after it (``ended``: a quit; a session cut at
    ``playlist_length`` is not an end).
    """
    from spotrec.rl.env import OUTCOMES, context_vector
    from spotrec.rl.user_model import OUTCOME_LABELS

    env = PlaylistEnv(sessions, truth, cfg, layout)
    rng = np.random.default_rng(seed)
    user, track, context, labels, ended, keys, positions, ids = [], [], [], [], [], [], [], []
    for i, spec in enumerate(sessions):
        env.reset(seed=seed + i, options={"session": spec})
        explore = i % 2 == 0
        done = False
        while not done:
            state = env.state()
            available = np.flatnonzero(state.available)
            if explore or rng.random() < 0.3:
                action = int(rng.choice(available))
            else:
                assert spec.scores is not None
                action = int(available[np.argmax(spec.scores[available])])
            ctx = context_vector(state.position, state.consecutive_skips, cfg)
            _, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            user.append(spec.user_features)
            track.append(spec.track_features[action])
            context.append(ctx)
            labels.append(OUTCOME_LABELS[OUTCOMES.index(info["outcome"])])
            ended.append(float(info["quit"]))
            keys.append(f"s{i}")
            positions.append(state.position)
            ids.append(str(spec.track_ids[action]))
    return UserModelData(
        user=np.array(user, np.float32),
        track=np.array(track, np.float32),
        context=np.array(context, np.float32),
        labels=np.array(labels, np.float32),
        track_ids=np.array(ids),
        ended=np.array(ended, np.float32),
        session_keys=np.array(keys),
        positions=np.array(positions),
    )


def _rows_of(data: UserModelData, keep: np.ndarray) -> UserModelData:
    return UserModelData(
        user=data.user[keep],
        track=data.track[keep],
        context=data.context[keep],
        labels=data.labels[keep],
        track_ids=None if data.track_ids is None else data.track_ids[keep],
        ended=None if data.ended is None else data.ended[keep],
        session_keys=None if data.session_keys is None else data.session_keys[keep],
        positions=None if data.positions is None else data.positions[keep],
    )


def learned_simulator_comparison(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The pipeline's path on an in-memory synthetic world, control vs long-term listener.

    Per world: log ``--lt-log-sessions`` sessions against the true listener (:func:`_log_sessions`), fit the
    MLP and the GRU user model (both with the learned termination head) on 70% of them, compare them on
    15% held out, train AH-DQN in the GRU simulator with the agent's own GRU features
    (:class:`~spotrec.rl.planning.SequentialAgentFeatures`), then play every policy on the same
    ``--lt-sessions`` fresh sessions in the learned simulator and against the true listener.

    Returns:
        (user model comparison, policy comparison, sim-to-real rank correlation per world).
    """
    from spotrec.rl.evaluate import mean_ci
    from spotrec.rl.planning import SequentialAgentFeatures
    from spotrec.rl.policies import GreedyUserModelPolicy, PopularityPolicy, ScorePolicy
    from spotrec.rl.sequential import (
        SequentialResponse,
        compare_user_models,
        mlp_end_probabilities,
        train_sequential_user_model,
    )
    from spotrec.rl.user_model import train_user_model

    worlds = {
        "control": {},
        "long_term": {
            "coherence_weight": args.coherence,
            "artist_fatigue_weight": args.fatigue,
            "patience_weight": args.patience,
        },
    }
    um_rows, rows, corr = [], [], []
    for world, switches in worlds.items():
        if world not in args.lt_worlds:
            continue
        _, cat, profiles, truth = _long_term_world(args.lt_users, args.lt_artists, args.seed, **switches)
        d = cat.track_vectors.shape[1]
        layout = FeatureLayout(
            user=tuple(f"u_v{i}" for i in range(d)),
            track=(*(f"t_v{i}" for i in range(d)), "t_popularity", "t_duration", "t_score"),
            context=("c_position", "c_consecutive_skips"),
        )
        cfg = RlConfig(
            pool_size=args.lt_pool,
            playlist_length=args.lt_length,
            episodes=args.lt_episodes,
            termination="learned",
            user_model_hidden=[64, 32],
            user_model_gru_hidden=args.gru_hidden,
            user_model_max_epochs=args.um_epochs,
            learning_starts=256,
            batch_size=64,
            q_hidden=[64, 64],
            gamma=args.gamma,
            exploration_fraction=0.5,
            log_every=max(args.lt_episodes // 5, 1),
            seed=args.seed,
        )
        rng = np.random.default_rng(args.seed)
        logged = _log_sessions(
            truth,
            _long_term_sessions(cat, profiles, args.lt_users, args.lt_pool, args.lt_log_sessions, rng, True),
            cfg,
            layout,
            args.seed,
        )
        assert logged.session_keys is not None
        number = np.array([int(k[1:]) for k in logged.session_keys])
        u = np.random.default_rng(args.seed + 7).random(args.lt_log_sessions)[number]
        train, validation, test = (_rows_of(logged, m) for m in (u < 0.7, (u >= 0.7) & (u < 0.85), u >= 0.85))
        started = time.perf_counter()
        mlp = train_user_model(train, validation, layout, cfg)
        mlp_s = time.perf_counter() - started
        started = time.perf_counter()
        gru = train_sequential_user_model(train, validation, layout, cfg)
        gru_s = time.perf_counter() - started
        gru_probs, gru_end = gru.predict_rows(test)
        ends = {"mlp": mlp_end_probabilities(mlp, test), "gru": gru_end}
        table = compare_user_models(
            {"mlp": mlp.predict(test), "gru": gru_probs},
            test,
            cfg.calibration_bins,
            {k: v for k, v in ends.items() if v is not None},
        )
        table.insert(0, "world", world)
        table["train_s"] = table["predictor"].map({"mlp": mlp_s, "gru": gru_s})
        um_rows.append(table)

        sim = SequentialResponse(gru)
        train_sessions = _long_term_sessions(cat, profiles, args.lt_users, args.lt_pool, 2000, rng, True)
        test_sessions = _long_term_sessions(cat, profiles, args.lt_users, args.lt_pool, args.lt_sessions, rng, True)
        started = time.perf_counter()
        agent = agent_mod.train_agent(
            PlaylistEnv(train_sessions, sim, cfg, layout),
            cfg,
            features=SequentialAgentFeatures(gru, cfg.pool_size),
        )
        train_s = time.perf_counter() - started
        policies = [
            RandomPolicy(),
            PopularityPolicy(),
            ScorePolicy("affinity_order"),
            GreedyUserModelPolicy(LearnedResponse(mlp), cfg, name="greedy_mlp"),
            GreedyUserModelPolicy(SequentialResponse(gru), cfg, name="greedy_gru"),
            GreedyUserModelPolicy(SequentialResponse(gru), cfg, name="greedy_gru_with_quit", with_quit=True),
            GreedyUserModelPolicy(truth, cfg, name="oracle_greedy"),
            DQNPolicy(agent.q, features=SequentialAgentFeatures(gru, cfg.pool_size)),
        ]
        means: dict[str, dict[str, float]] = {}
        for where, response in (("learned_sim", sim), ("true_listener", truth)):
            env = PlaylistEnv(test_sessions, response, cfg, layout)
            for policy in policies:
                per = run_sessions(env, policy, test_sessions, seed=args.seed + 1)
                mean, lo, hi = mean_ci(per["session_reward"].to_numpy())
                means.setdefault(policy.name, {})[where] = mean
                rows.append(
                    {
                        "world": world,
                        "evaluated_in": where,
                        "policy": policy.name,
                        "reward": mean,
                        "ci95": f"[{lo:.2f}, {hi:.2f}]",
                        "length": per["session_length"].mean(),
                        "skip_rate": per["skip_rate"].mean(),
                        "train_s": train_s if policy.name == "ah_dqn" else float("nan"),
                    }
                )
        pair = pd.DataFrame(means).T
        corr.append(
            {
                "world": world,
                "policies": len(pair),
                "spearman_sim_vs_true": float(pair["learned_sim"].corr(pair["true_listener"], method="spearman")),
                "mean_sim_minus_true": float((pair["learned_sim"] - pair["true_listener"]).mean()),
            }
        )
    return pd.concat(um_rows, ignore_index=True), pd.DataFrame(rows), pd.DataFrame(corr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="simulated steps per (world, pool)")
    parser.add_argument("--pools", type=int, nargs="+", default=[30, 100])
    parser.add_argument("--episodes", type=int, default=600, help="AH-DQN training episodes per run")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--pool", type=int, default=10, help="planted problem: pool size")
    parser.add_argument("--bad", type=int, default=4, help="planted problem: always-skipped tracks per pool")
    parser.add_argument("--length", type=int, default=5, help="planted problem: playlist length")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--policy", help="a spotrec rl checkpoint (file or folder): report only its curve")
    parser.add_argument("--window", type=int, default=100, help="--policy: episodes in the moving mean")
    parser.add_argument("--long-term", action="store_true", help="report only the long-term vs control comparison")
    parser.add_argument("--coherence", type=float, default=2.0, help="--long-term: generate.coherence_weight")
    parser.add_argument("--fatigue", type=float, default=0.4, help="--long-term: generate.artist_fatigue_weight")
    parser.add_argument("--patience", type=float, default=1.5, help="--long-term: generate.patience_weight")
    parser.add_argument("--lt-users", type=int, default=200)
    parser.add_argument("--lt-artists", type=int, default=100)
    parser.add_argument("--lt-pool", type=int, default=30)
    parser.add_argument("--lt-length", type=int, default=15)
    parser.add_argument("--lt-episodes", type=int, default=3000)
    parser.add_argument("--lt-sessions", type=int, default=500)
    parser.add_argument("--lt-log-sessions", type=int, default=3000, help="--long-term: logged sessions")
    parser.add_argument("--gru-hidden", type=int, default=32, help="--long-term: GRU state size")
    parser.add_argument("--um-epochs", type=int, default=30, help="--long-term: user model epoch cap")
    parser.add_argument("--lt-worlds", nargs="+", default=["control", "long_term"], help="--long-term: worlds")
    parser.add_argument("--gamma", type=float, default=0.9, help="--long-term: AH-DQN discount")
    parser.add_argument(
        "--lt-direct", action="store_true", help="--long-term: AH-DQN trained against the true listener instead"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.long_term:
        torch.set_num_threads(1)
        pd.set_option("display.width", 200)
        if args.lt_direct:
            print("== policies against the true listener: control world vs long-term world ==")
            print(long_term_comparison(args).to_string(index=False, float_format="%.3f"))
            return
        um, policies, corr = learned_simulator_comparison(args)
        print("== user models on held-out logged sessions (AUC, log-loss, calibration error per head) ==")
        wide = um.pivot_table(index=["world", "head"], columns=["predictor", "metric"], values="value", sort=False)
        print(wide.to_string(float_format=lambda v: f"{v:.4f}"))
        print()
        for where in ("learned_sim", "true_listener"):
            print(f"== policies evaluated in {where} (AH-DQN trained in the GRU simulator) ==")
            part = policies[policies["evaluated_in"] == where].drop(columns="evaluated_in")
            print(part.to_string(index=False, float_format="%.3f"))
            print()
        print("== sim-to-real: rank correlation of the policies between simulator and true listener ==")
        print(corr.to_string(index=False, float_format="%.3f"))
        return
    if args.policy:
        print(f"== AH-DQN training on the demo data ({args.policy}) ==")
        print(training_curve(args.policy, args.window).to_string(index=False, float_format="%.2f"))
        return
    torch.set_num_threads(1)
    pd.set_option("display.width", 160)

    print("== simulator throughput (random policy) ==")
    print(simulator_throughput(args.steps, args.pools, seed=0).to_string(index=False, float_format="%.1f"))
    print()
    print(f"== AH-DQN convergence: pool {args.pool}, {args.bad} always skipped, playlists of {args.length} ==")
    table = convergence(args.pool, args.bad, args.length, args.episodes, args.eval_every, list(range(args.seeds)))
    print(table.to_string(index=False, float_format="%.2f"))
    print()
    print(table.groupby("variant")[["episodes_to_99pct", "seconds_to_99pct", "final_greedy_reward"]].mean())


if __name__ == "__main__":
    main()
