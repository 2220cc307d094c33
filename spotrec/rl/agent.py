"""Action-Head DQN (AH-DQN) for playlist generation (Tomasi et al., KDD 2023).

The Q network scores one (state, candidate track) pair at a time: ``Q(user, context, track) -> scalar``.
The same weights therefore score a pool of any size and content; the greedy action is the argmax over
the pool's playable tracks (the mask). Training follows cleanrl's ``dqn.py``: epsilon-greedy behaviour,
a replay buffer, a target network refreshed every ``target_update_interval`` gradient steps, and
double-DQN targets (the online network picks the next track, the target network values it).
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from spotrec.config import RlConfig
from spotrec.rl.env import PlaylistEnv
from spotrec.rl.features import FeatureLayout
from spotrec.rl.user_model import (
    COMPLETED,
    HEADS,
    LISTENED,
    LearnedUserModel,
    UserModelNet,
    model_version,
    user_model_from_payload,
    user_model_payload,
)

log = logging.getLogger(__name__)

MASKED_Q = -1e9
"""Q value given to unplayable pool slots (finite, so masked rows times done=1 never make NaN)."""


class QNetwork(nn.Module):
    """Action-head Q network: an MLP over ``[user, context, track]`` returning one value per track.

    With ``user_model`` the input also carries that (frozen) user model's three predictions for the
    (user, track, context): the agent starts from what the world model knows about the next response and
    only has to learn the long-term part. The predictions come from the agent's own copy of the *learned*
    model, never from the environment, so evaluating against the true listener stays fair.

    With ``reward_prior`` (the rewards of complete / listen / skip, and a user model) the network is a
    residual on the user model's expected immediate reward, ``Q(s, a) = r_hat(s, a) + residual(s, a)``,
    whose last layers start at zero: before any update the agent is exactly the greedy policy on the user
    model, and TD learning only has to fit the continuation ``gamma * V(s')`` and where the immediate
    reward misleads about the long run (a skip makes the next skips and a quit likelier). With
    ``dueling`` the residual is ``V(user, context) + A(s, a)``: the state stream carries the session's
    expected future, so the action stream only learns how candidates differ. ``action_inputs`` is what
    the action stream sees: ``all`` (user, context, track features, predictions) or ``predictions``
    (context and the three predictions only). On the demo world the full-input residual fitted TD noise
    per user and track and played worse than greedy; prediction inputs with a state stream kept the
    greedy policy's quality and beat ALS order (figures in docs/benchmarks.md).
    """

    def __init__(
        self,
        layout: FeatureLayout,
        hidden: Sequence[int],
        user_model: UserModelNet | None = None,
        reward_prior: Sequence[float] | None = None,
        dueling: bool = False,
        action_inputs: str = "all",
    ) -> None:
        super().__init__()
        if action_inputs not in ("all", "predictions"):
            raise ValueError(f"action_inputs must be 'all' or 'predictions', not {action_inputs!r}")
        if action_inputs == "predictions" and user_model is None:
            raise ValueError("action_inputs='predictions' needs a user model")
        self.action_inputs = action_inputs
        self.user_model = user_model
        if user_model is not None:
            user_model.requires_grad_(False)
        if reward_prior is not None and user_model is None:
            raise ValueError("reward_prior needs a user model to predict the immediate reward")
        self.reward_prior: torch.Tensor | None
        if reward_prior is not None:
            self.register_buffer("reward_prior", torch.tensor(list(reward_prior), dtype=torch.float32))
        else:
            self.reward_prior = None
        if action_inputs == "predictions":
            width = layout.context_dim + len(HEADS)
        else:
            width = layout.user_dim + layout.context_dim + layout.track_dim + (len(HEADS) if user_model else 0)
        self.mlp = _mlp(width, hidden, zero_last=self.reward_prior is not None)
        self.value = (
            _mlp(layout.user_dim + layout.context_dim, hidden, zero_last=self.reward_prior is not None)
            if dueling
            else None
        )

    @torch.no_grad()
    def user_probs(self, user: torch.Tensor, context: torch.Tensor, pool: torch.Tensor) -> torch.Tensor | None:
        """The frozen user model's (B, P, 3) probabilities for every candidate, or None without one.

        They depend only on the state, so training computes them once per environment step and keeps
        them in the replay buffer instead of re-running the user model on every sampled batch.
        """
        if self.user_model is None:
            return None
        n = pool.shape[1]
        u = user.unsqueeze(1).expand(-1, n, -1)
        c = context.unsqueeze(1).expand(-1, n, -1)
        return torch.sigmoid(self.user_model(u, pool, c))

    def forward(
        self, user: torch.Tensor, context: torch.Tensor, pool: torch.Tensor, probs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Q values (batch, pool): ``user`` (B, du), ``context`` (B, dc), ``pool`` (B, P, dt).

        ``probs`` are :meth:`user_probs` of the same inputs when the caller has them already.
        """
        n = pool.shape[1]
        c = context.unsqueeze(1).expand(-1, n, -1)
        parts = [c] if self.action_inputs == "predictions" else [user.unsqueeze(1).expand(-1, n, -1), c, pool]
        if self.user_model is not None:
            if probs is None:
                probs = self.user_probs(user, context, pool)
            assert probs is not None
            parts.append(probs)
        q = self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)
        if self.value is not None:
            q = q + self.value(torch.cat([user, context], dim=-1))
        if self.reward_prior is not None and probs is not None:
            q = q + expected_reward_torch(probs, self.reward_prior)
        return q

    def masked(
        self,
        user: torch.Tensor,
        context: torch.Tensor,
        pool: torch.Tensor,
        mask: torch.Tensor,
        probs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Q values with unplayable slots set to :data:`MASKED_Q`."""
        return self(user, context, pool, probs).masked_fill(~mask.bool(), MASKED_Q)


def _mlp(width: int, hidden: Sequence[int], zero_last: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    last = nn.Linear(width, 1)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def q_network(layout: FeatureLayout, cfg: RlConfig, user_model: UserModelNet | None) -> QNetwork:
    """The Q network ``cfg`` describes (with ``user_model``'s predictions when given)."""
    return QNetwork(
        layout,
        cfg.q_hidden,
        user_model,
        reward_vector(cfg) if user_model is not None and cfg.q_reward_prior else None,
        dueling=cfg.q_dueling,
        action_inputs=cfg.q_action_inputs if user_model is not None else "all",
    )


def reward_vector(cfg: RlConfig) -> tuple[float, float, float]:
    """The configured rewards of the exclusive outcomes (complete, listen only, early skip)."""
    return (cfg.reward_complete, cfg.reward_listen, cfg.reward_skip)


def expected_reward_torch(probs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Expected immediate reward from the user model's (..., 3) head probabilities, as the env computes it.

    The same mapping as :func:`spotrec.rl.env.expected_reward`: completing implies listening, so
    P(listen only) = max(P(listen), P(complete)) - P(complete) and P(skip early) = 1 - max(...).
    """
    pc = probs[..., COMPLETED]
    pl = torch.maximum(probs[..., LISTENED], pc)
    return pc * rewards[0] + (pl - pc) * rewards[1] + (1.0 - pl) * rewards[2]


def obs_tensors(obs: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    """A single observation as batch-of-one tensors (user, context, pool, mask)."""
    return (
        torch.as_tensor(obs["user"], dtype=torch.float32).unsqueeze(0),
        torch.as_tensor(obs["context"], dtype=torch.float32).unsqueeze(0),
        torch.as_tensor(obs["pool"], dtype=torch.float32).unsqueeze(0),
        torch.as_tensor(obs["mask"]).bool().unsqueeze(0),
    )


@torch.no_grad()
def greedy_action(q: QNetwork, obs: dict[str, np.ndarray], probs: torch.Tensor | None = None) -> tuple[int, float]:
    """The playable track with the highest Q value, and that value (``probs``: :meth:`QNetwork.user_probs`)."""
    user, context, pool, mask = obs_tensors(obs)
    values = q.masked(user, context, pool, mask, probs)[0]
    a = int(torch.argmax(values))
    return a, float(values[a])


class ReplayBuffer:
    """Circular buffer of transitions; a transition's pool is stored once (it does not change in a step).

    With ``with_probs`` it also keeps the frozen user model's (pool, 3) probabilities of the state and the
    next state (:meth:`QNetwork.user_probs`), computed once when acting.
    """

    FIELDS = ("user", "pool", "context", "mask", "next_context", "next_mask", "action", "reward", "done")

    def __init__(
        self, capacity: int, layout: FeatureLayout, pool_size: int, seed: int, with_probs: bool = False
    ) -> None:
        self.capacity = capacity
        self.with_probs = with_probs
        n_probs = capacity if with_probs else 0
        self.probs = np.zeros((n_probs, pool_size, len(HEADS)), np.float32)
        self.next_probs = np.zeros_like(self.probs)
        self.user = np.zeros((capacity, layout.user_dim), np.float32)
        self.pool = np.zeros((capacity, pool_size, layout.track_dim), np.float32)
        self.context = np.zeros((capacity, layout.context_dim), np.float32)
        self.mask = np.zeros((capacity, pool_size), bool)
        self.next_context = np.zeros_like(self.context)
        self.next_mask = np.zeros_like(self.mask)
        self.action = np.zeros(capacity, np.int64)
        self.reward = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.size = 0
        self._next = 0
        self._rng = np.random.default_rng(seed)

    def add(
        self,
        obs: dict[str, np.ndarray],
        action: int,
        reward: float,
        next_obs: dict[str, np.ndarray],
        done: bool,
        probs: np.ndarray | None = None,
        next_probs: np.ndarray | None = None,
    ) -> None:
        i = self._next
        if self.with_probs:
            if probs is None or next_probs is None:
                raise ValueError("this buffer keeps user model probabilities: pass probs and next_probs")
            self.probs[i], self.next_probs[i] = probs, next_probs
        self.user[i], self.pool[i], self.context[i], self.mask[i] = (
            obs["user"],
            obs["pool"],
            obs["context"],
            obs["mask"],
        )
        self.next_context[i], self.next_mask[i] = next_obs["context"], next_obs["mask"]
        self.action[i], self.reward[i], self.done[i] = action, reward, float(done)
        self._next = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        idx = self._rng.integers(0, self.size, size=batch_size)
        names = self.FIELDS + (("probs", "next_probs") if self.with_probs else ())
        return {name: torch.as_tensor(getattr(self, name)[idx]) for name in names}


def linear_schedule(start: float, end: float, duration: float, t: float) -> float:
    """Linear interpolation from ``start`` to ``end`` over ``duration`` steps, then ``end``."""
    if duration <= 0:
        return end
    return start + (end - start) * min(t / duration, 1.0)


def td_targets(
    q: QNetwork, target: QNetwork, batch: dict[str, torch.Tensor], gamma: float, double_dqn: bool
) -> torch.Tensor:
    """``r + gamma * (1 - done) * Q_target(s', a')``; a' from the online net (double DQN) or the target net."""
    with torch.no_grad():
        args = (batch["user"], batch["next_context"], batch["pool"], batch["next_mask"], batch.get("next_probs"))
        target_q = target.masked(*args)
        if double_dqn:
            best = q.masked(*args).argmax(dim=1, keepdim=True)
            next_value = target_q.gather(1, best).squeeze(1)
        else:
            next_value = target_q.max(dim=1).values
        # A terminal next state may have an empty mask; done = 1 zeroes its (masked) value.
        return batch["reward"] + gamma * (1.0 - batch["done"]) * next_value


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


def train_agent(
    env: PlaylistEnv,
    cfg: RlConfig,
    *,
    user_model: LearnedUserModel | None = None,
    on_episode_end: Callable[[int, QNetwork], bool] | None = None,
) -> TrainedAgent:
    """Train AH-DQN on ``env`` for ``cfg.episodes`` episodes; return the online network.

    Epsilon decays linearly over the first ``exploration_fraction`` of the episodes. Exploration picks a
    random *playable* track. Log lines every ``cfg.log_every`` episodes carry the window's mean return.

    Args:
        env: the simulator (its ``layout`` sizes the network).
        cfg: hyperparameters and the seed.
        user_model: when given, its predictions are extra Q-network inputs (see :class:`QNetwork`).
        on_episode_end: called with (episodes done, online network) after every episode, e.g. to evaluate
            the greedy policy; returning True stops training early.
    """
    # Seeding: one block, so two runs with the same config give the same network.
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    env.action_space.seed(cfg.seed)

    layout = env.layout
    q = q_network(layout, cfg, copy.deepcopy(user_model.net) if user_model is not None else None)
    target = copy.deepcopy(q)
    opt = torch.optim.Adam([p for p in q.parameters() if p.requires_grad], lr=cfg.q_lr)
    buffer = ReplayBuffer(cfg.replay_size, layout, cfg.pool_size, cfg.seed, with_probs=q.user_model is not None)

    def probs_of(o: dict[str, np.ndarray]) -> torch.Tensor | None:
        return q.user_probs(*obs_tensors(o)[:3])

    history: list[dict[str, float]] = []
    global_step, updates = 0, 0
    started = time.perf_counter()
    obs, _ = env.reset(seed=cfg.seed)
    for episode in range(cfg.episodes):
        if episode > 0:
            obs, _ = env.reset()
        probs = probs_of(obs)
        epsilon = linear_schedule(cfg.epsilon_start, cfg.epsilon_end, cfg.exploration_fraction * cfg.episodes, episode)
        done, ep_return, ep_len, losses, q_values = False, 0.0, 0, [], []
        while not done:
            if rng.random() < epsilon:
                action = int(rng.choice(np.flatnonzero(obs["mask"])))
            else:
                action, q_value = greedy_action(q, obs, probs)
                q_values.append(q_value)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            next_probs = probs_of(next_obs)
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
    agent = TrainedAgent(q=q, layout=layout, cfg=cfg, history=history)
    agent.version = model_version(q, layout, cfg, prefix="ahdqn")
    return agent


# --- checkpoints ----------------------------------------------------------------------------------


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
    inner = UserModelNet(layout, cfg.user_model_hidden) if payload.get("q_uses_user_model") else None
    q = q_network(layout, cfg, inner)
    q.load_state_dict(payload["q_state_dict"])
    q.eval()
    agent = TrainedAgent(q=q, layout=layout, cfg=cfg, version=payload["version"], history=payload["history"])
    um = None if payload["user_model"] is None else user_model_from_payload(payload["user_model"])
    return agent, um
