"""The DQN pieces the training loop (:func:`spotrec.rl.agent.train_agent`) wires: replay buffer, schedule, targets."""

from __future__ import annotations

import numpy as np
import torch

from spotrec.rl.features import FeatureLayout
from spotrec.rl.q_network import QNetwork
from spotrec.rl.user_model import HEADS


class ReplayBuffer:
    """Circular buffer of transitions; a transition's pool is stored once (it does not change in a step).

    With ``with_probs`` it also keeps the frozen user model's (pool, 3) probabilities of the state and the
    next state (:meth:`QNetwork.user_probs`), computed once when acting.
    """

    FIELDS = ("user", "pool", "context", "mask", "next_context", "next_mask", "action", "reward", "done")

    def __init__(
        self,
        capacity: int,
        layout: FeatureLayout,
        pool_size: int,
        seed: int,
        with_probs: bool = False,
        n_predictions: int = len(HEADS),
    ) -> None:
        self.capacity = capacity
        self.with_probs = with_probs
        n_probs = capacity if with_probs else 0
        self.probs = np.zeros((n_probs, pool_size, n_predictions), np.float32)
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
