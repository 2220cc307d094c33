"""The Action-Head DQN's Q network (Tomasi et al., KDD 2023) and its greedy action.

The Q network scores one (state, candidate track) pair at a time: ``Q(user, context, track) -> scalar``.
The same weights therefore score a pool of any size and content; the greedy action is the argmax over
the pool's playable tracks (the mask).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from spotrec.config import RlConfig
from spotrec.rl.features import FeatureLayout
from spotrec.rl.user_model import COMPLETED, HEADS, LISTENED, UserNet

END_COLUMN = 3
"""Column of a caller-computed prediction block holding P(the session ends after the track), when it has one
(:data:`spotrec.rl.planning.PREDICTION_COLUMNS`)."""
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
        user_model: UserNet | None = None,
        reward_prior: Sequence[float] | None = None,
        dueling: bool = False,
        action_inputs: str = "all",
        n_predictions: int = 0,
        quit_prior: float | None = None,
    ) -> None:
        super().__init__()
        if action_inputs not in ("all", "predictions"):
            raise ValueError(f"action_inputs must be 'all' or 'predictions', not {action_inputs!r}")
        if user_model is not None and n_predictions:
            raise ValueError("give either a user model or n_predictions (predictions computed by the caller)")
        self.n_predictions = len(HEADS) if user_model is not None else n_predictions
        """Per-candidate prediction columns: the first three are the heads in HEADS order (the reward prior
        reads them); a caller-computed block (e.g. :class:`spotrec.rl.planning.SequentialAgentFeatures`)
        may add more (termination chance, sequence features)."""
        if action_inputs == "predictions" and not self.n_predictions:
            raise ValueError("action_inputs='predictions' needs a user model")
        self.action_inputs = action_inputs
        self.user_model = user_model
        if user_model is not None:
            user_model.requires_grad_(False)
        if reward_prior is not None and not self.n_predictions:
            raise ValueError("reward_prior needs a user model to predict the immediate reward")
        if quit_prior is not None and (reward_prior is None or self.n_predictions <= END_COLUMN):
            raise ValueError("quit_prior needs the reward prior and a termination column in the predictions")
        self.quit_prior = quit_prior
        """With caller-computed predictions whose column :data:`END_COLUMN` is P(the session ends after the
        track): the prior also carries the expected quit reward, ``quit_prior * P(end)``."""
        self.reward_prior: torch.Tensor | None
        if reward_prior is not None:
            self.register_buffer("reward_prior", torch.tensor(list(reward_prior), dtype=torch.float32))
        else:
            self.reward_prior = None
        if action_inputs == "predictions":
            width = layout.context_dim + self.n_predictions
        else:
            width = layout.user_dim + layout.context_dim + layout.track_dim + self.n_predictions
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
        if self.n_predictions:
            if probs is None:
                probs = self.user_probs(user, context, pool)
            if probs is None:
                raise ValueError("this Q network reads caller-computed predictions: pass probs")
            parts.append(probs)
        q = self.mlp(torch.cat(parts, dim=-1)).squeeze(-1)
        if self.value is not None:
            q = q + self.value(torch.cat([user, context], dim=-1))
        if self.reward_prior is not None and probs is not None:
            q = q + expected_reward_torch(probs, self.reward_prior)
            if self.quit_prior is not None:
                q = q + self.quit_prior * probs[..., END_COLUMN]
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


def q_network(
    layout: FeatureLayout,
    cfg: RlConfig,
    user_model: UserNet | None,
    n_predictions: int = 0,
    with_end: bool = False,
) -> QNetwork:
    """The Q network ``cfg`` describes (with ``user_model``'s predictions, or ``n_predictions`` columns of
    caller-computed ones, when given; ``with_end``: their column :data:`END_COLUMN` is the termination chance,
    and the reward prior includes the expected quit reward)."""
    predicted = user_model is not None or n_predictions > 0
    return QNetwork(
        layout,
        cfg.q_hidden,
        user_model,
        reward_vector(cfg) if predicted and cfg.q_reward_prior else None,
        dueling=cfg.q_dueling,
        action_inputs=cfg.q_action_inputs if predicted else "all",
        n_predictions=n_predictions,
        quit_prior=cfg.reward_quit if with_end and cfg.q_reward_prior and n_predictions > END_COLUMN else None,
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
