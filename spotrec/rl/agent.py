"""Action-Head DQN (AH-DQN) for playlist generation (Tomasi et al., KDD 2023): training and checkpoints.

The Q network (:mod:`spotrec.rl.q_network`) scores one (state, candidate track) pair at a time, so the same
weights score a pool of any size and content. Training follows cleanrl's ``dqn.py``: epsilon-greedy
behaviour, a replay buffer, a target network refreshed every ``target_update_interval`` gradient steps, and
double-DQN targets (the online network picks the next track, the target network values it); those pieces
are in :mod:`spotrec.rl.dqn`.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spotrec.config import RlConfig
from spotrec.rl.dqn import ReplayBuffer, linear_schedule, td_targets
from spotrec.rl.env import PlaylistEnv
from spotrec.rl.features import FeatureLayout
from spotrec.rl.planning import AgentFeatures, SessionAgentFeatures, augment
from spotrec.rl.q_network import QNetwork, greedy_action, obs_tensors, q_network
from spotrec.rl.user_model import (
    LearnedUserModel,
    model_version,
    new_user_model_net,
    user_model_from_payload,
    user_model_payload,
)

log = logging.getLogger(__name__)


@dataclass
class TrainedAgent:
    """A trained Q network with its layout, config, version and training history."""

    q: QNetwork
    layout: FeatureLayout
    cfg: RlConfig
    version: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per episode: episode, return, length, epsilon, loss (mean over the episode's updates), q_mean, and
    the seconds since training started (what ``benchmarks/rl_bench.py --policy`` reads)."""
    features: AgentFeatures | None = None
    """The agent's own features it was trained with (a checkpoint stores the ones with a ``spec()``)."""


def train_agent(
    env: PlaylistEnv,
    cfg: RlConfig,
    *,
    user_model: LearnedUserModel | None = None,
    features: AgentFeatures | None = None,
    on_episode_end: Callable[[int, QNetwork], bool] | None = None,
) -> TrainedAgent:
    """Train AH-DQN on ``env`` for ``cfg.episodes`` episodes; return the online network.

    Epsilon decays linearly over the first ``exploration_fraction`` of the episodes. Exploration picks a
    random *playable* track. Log lines every ``cfg.log_every`` episodes carry the window's mean return.

    Args:
        env: the simulator (its ``layout`` sizes the network).
        cfg: hyperparameters and the seed.
        user_model: when given, its predictions are extra Q-network inputs (see :class:`QNetwork`).
        features: instead of ``user_model``: the agent's own per-candidate predictions and state features
            computed from the session so far (:class:`spotrec.rl.planning.SequentialAgentFeatures`); the
            state features are appended to the context block, so the agent's state carries the history.
        on_episode_end: called with (episodes done, online network) after every episode, e.g. to evaluate
            the greedy policy; returning True stops training early.
    """
    # Seeding: one block, so two runs with the same config give the same network.
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env.action_space.seed(cfg.seed)

    if features is not None and user_model is not None:
        raise ValueError("give the agent either a user model's predictions or its own features, not both")
    layout = env.layout if features is None else features.layout(env.layout)
    q = q_network(
        layout,
        cfg,
        copy.deepcopy(user_model.net) if user_model is not None else None,
        n_predictions=features.n_predictions if features is not None else 0,
        with_end=features is not None and features.quit_prior,
    )
    target = copy.deepcopy(q)
    opt = torch.optim.Adam([p for p in q.parameters() if p.requires_grad], lr=cfg.q_lr)
    buffer = ReplayBuffer(
        cfg.replay_size,
        layout,
        cfg.pool_size,
        cfg.seed,
        with_probs=q.n_predictions > 0,
        n_predictions=max(q.n_predictions, 1),
    )

    def observe(o: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], torch.Tensor | None]:
        """The observation as the Q network sees it, and its prediction block."""
        if features is None:
            return o, q.user_probs(*obs_tensors(o)[:3])
        preds, state_features = features(o, env.state())
        return augment(o, state_features), torch.from_numpy(preds).unsqueeze(0)

    history: list[dict[str, float]] = []
    global_step, updates = 0, 0
    started = time.perf_counter()
    obs, _ = env.reset(seed=cfg.seed)
    for episode in range(cfg.episodes):
        if episode > 0:
            obs, _ = env.reset()
        obs, probs = observe(obs)
        epsilon = linear_schedule(cfg.epsilon_start, cfg.epsilon_end, cfg.exploration_fraction * cfg.episodes, episode)
        done, ep_return, ep_len, losses, q_values = False, 0.0, 0, [], []
        while not done:
            if rng.random() < epsilon:
                action = int(rng.choice(np.flatnonzero(obs["mask"])))
            else:
                action, q_value = greedy_action(q, obs, probs)
                q_values.append(q_value)
            raw_next, reward, terminated, truncated, _ = env.step(action)
            next_obs, next_probs = observe(raw_next)
            buffer.add(
                obs,
                action,
                reward,
                next_obs,
                terminated,
                None if probs is None else probs[0].numpy(),
                None if next_probs is None else next_probs[0].numpy(),
            )
            obs, probs, done = next_obs, next_probs, terminated or truncated
            ep_return += reward
            ep_len += 1
            global_step += 1
            if global_step > cfg.learning_starts and global_step % cfg.train_frequency == 0:
                batch = buffer.sample(cfg.batch_size)
                y = td_targets(q, target, batch, cfg.gamma, cfg.double_dqn)
                pred = q(batch["user"], batch["context"], batch["pool"], batch.get("probs"))
                pred = pred.gather(1, batch["action"].unsqueeze(1))
                loss = nn.functional.mse_loss(pred.squeeze(1), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
                updates += 1
                if updates % cfg.target_update_interval == 0:
                    for tp, p in zip(target.parameters(), q.parameters()):
                        tp.data.copy_(cfg.tau * p.data + (1.0 - cfg.tau) * tp.data)
        history.append(
            {
                "episode": episode,
                "charts/episodic_return": ep_return,
                "charts/episodic_length": ep_len,
                "charts/epsilon": epsilon,
                "losses/td_loss": float(np.mean(losses)) if losses else float("nan"),
                "losses/q_values": float(np.mean(q_values)) if q_values else float("nan"),
                "time/elapsed_s": time.perf_counter() - started,
            }
        )
        if (episode + 1) % cfg.log_every == 0 or episode + 1 == cfg.episodes:
            window = history[-cfg.log_every :]
            log.info(
                "ah_dqn episode=%d charts/mean_return=%.3f charts/mean_length=%.2f charts/epsilon=%.3f "
                "losses/td_loss=%.4f steps=%d SPS=%d",
                episode + 1,
                np.mean([h["charts/episodic_return"] for h in window]),
                np.mean([h["charts/episodic_length"] for h in window]),
                epsilon,
                np.nanmean([h["losses/td_loss"] for h in window]) if updates else float("nan"),
                global_step,
                int(global_step / max(time.perf_counter() - started, 1e-9)),
            )
        if on_episode_end is not None and on_episode_end(episode + 1, q):
            log.info("ah_dqn stopped by callback after %d episodes", episode + 1)
            break
    agent = TrainedAgent(q=q, layout=layout, cfg=cfg, history=history, features=features)
    agent.version = model_version(q, layout, cfg, prefix="ahdqn")
    return agent


# --- checkpoints ----------------------------------------------------------------------------------


def _features_spec(features: AgentFeatures | None) -> dict[str, Any] | None:
    if features is None:
        return None
    spec = getattr(features, "spec", None)
    if spec is None:
        raise ValueError(f"{type(features).__name__} cannot be checkpointed (no spec()): playlists need it")
    return dict(spec())


def save_policy(agent: TrainedAgent, user_model: LearnedUserModel | None, directory: str | Path) -> Path:
    """One file with the Q network and (optionally) the user model: what executors need to build playlists.

    Written as ``<directory>/<version>.pt`` with ``<directory>/LATEST`` pointing at it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{agent.version}.pt"
    payload: dict[str, Any] = {
        "kind": "ah_dqn",
        "version": agent.version,
        "layout": agent.layout.to_dict(),
        "config": agent.cfg.to_dict(),
        "q_state_dict": agent.q.state_dict(),
        "q_uses_user_model": agent.q.user_model is not None,
        "history": agent.history,
        "user_model": None if user_model is None else user_model_payload(user_model),
        "agent_features": _features_spec(agent.features),
    }
    torch.save(payload, path)
    (directory / "LATEST").write_text(agent.version + "\n")
    log.info("ah_dqn checkpoint %s", path)
    return path


LEGACY_Q_SETTINGS: dict[str, Any] = {"q_reward_prior": False, "q_dueling": False, "q_action_inputs": "all"}
"""The Q-network settings of checkpoints written before these options existed."""


def load_policy(path: str | Path) -> tuple[TrainedAgent, LearnedUserModel | None]:
    """Load a :func:`save_policy` file (or a directory's ``LATEST``)."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{(path / 'LATEST').read_text().strip()}.pt"
    payload = torch.load(path, map_location="cpu", weights_only=False)
    layout = FeatureLayout.from_dict(payload["layout"])
    # Checkpoints from before the reward prior and the dueling streams had neither: load them as trained.
    cfg = RlConfig.from_dict(LEGACY_Q_SETTINGS | payload["config"])
    um = None if payload["user_model"] is None else user_model_from_payload(payload["user_model"])
    features = None
    if payload.get("agent_features") is not None:
        if um is None:
            raise ValueError(f"{path}: the agent's session features need the user model, which is missing")
        features = SessionAgentFeatures.from_spec(payload["agent_features"], um)
        q = q_network(layout, cfg, None, n_predictions=features.n_predictions, with_end=features.quit_prior)
    else:
        inner = new_user_model_net(layout, cfg) if payload.get("q_uses_user_model") else None
        q = q_network(layout, cfg, inner)
    q.load_state_dict(payload["q_state_dict"])
    q.eval()
    agent = TrainedAgent(
        q=q, layout=layout, cfg=cfg, version=payload["version"], history=payload["history"], features=features
    )
    return agent, um
