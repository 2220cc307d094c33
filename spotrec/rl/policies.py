"""Policies that fill a session in :class:`~spotrec.rl.env.PlaylistEnv`: the agent and its baselines.

Every policy answers ``act(obs, state, rng) -> pool index`` and only ever picks a playable track. Ties
are broken by the lower pool index, so the ranking baselines are deterministic.

* :class:`RandomPolicy`: uniform over playable tracks (the floor).
* :class:`PopularityPolicy`: most popular first.
* :class:`ScorePolicy`: a recommender's order (e.g. ALS score) first.
* :class:`GreedyUserModelPolicy`: highest immediate expected reward under the user model (myopic).
* :class:`DQNPolicy`: argmax of the AH-DQN's Q values (plans for the whole session).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from spotrec.config import RlConfig
from spotrec.rl.env import (
    History,
    LearnedResponse,
    ResponseModel,
    SessionSpec,
    SessionState,
    context_vector,
    expected_reward,
    outcome_probabilities,
    respond,
)
from spotrec.rl.planning import AgentFeatures, augment
from spotrec.rl.q_network import QNetwork, greedy_action
from spotrec.rl.user_model import LearnedUserModel


class Policy(Protocol):
    """Chooses the next track of a session."""

    name: str

    def act(self, obs: dict[str, np.ndarray], state: SessionState, rng: np.random.Generator) -> int:
        """Pool index of a playable track."""
        ...


def _best_available(values: np.ndarray, available: np.ndarray) -> int:
    """Index of the largest value among available candidates (first one on ties)."""
    masked = np.where(available, np.asarray(values, dtype=np.float64), -np.inf)
    return int(np.argmax(masked))


class RandomPolicy:
    name = "random"

    def act(self, obs: dict[str, np.ndarray], state: SessionState, rng: np.random.Generator) -> int:
        return int(rng.choice(np.flatnonzero(state.available)))


class PopularityPolicy:
    name = "popularity"

    def act(self, obs: dict[str, np.ndarray], state: SessionState, rng: np.random.Generator) -> int:
        assert state.session.popularity is not None
        return _best_available(state.session.popularity, state.available)


class ScorePolicy:
    """Plays candidates in the order of a recommender's score (``SessionSpec.scores``, e.g. ALS)."""

    def __init__(self, name: str = "als_score") -> None:
        self.name = name

    def act(self, obs: dict[str, np.ndarray], state: SessionState, rng: np.random.Generator) -> int:
        assert state.session.scores is not None
        return _best_available(state.session.scores, state.available)


class GreedyUserModelPolicy:
    """Highest immediate expected reward under a response model, at the current position and skip run.

    A sequential response model (e.g. the true listener with long-term effects: the "oracle" baseline) also
    sees the session so far; the policy stays myopic either way.
    """

    def __init__(
        self, response: ResponseModel, cfg: RlConfig, name: str = "greedy_user_model", with_quit: bool = False
    ) -> None:
        """``with_quit``: also count the expected quit reward (``reward_quit`` times the response model's
        P(end | outcome), when it has one): greedy on the whole immediate reward, a one-step look at the end
        of the session (a diagnostic baseline: where an agent's gain over plain greedy comes from)."""
        self.response = response
        self.cfg = cfg
        self.name = name
        self.with_quit = with_quit

    def act(self, obs: dict[str, np.ndarray], state: SessionState, rng: np.random.Generator) -> int:
        candidates = np.flatnonzero(state.available)
        probs = respond(
            self.response, state.session, candidates, state.position, state.consecutive_skips, state.history
        )
        value = expected_reward(probs, self.cfg)
        if self.with_quit and probs.p_quit_after is not None:
            value = value + self.cfg.reward_quit * (outcome_probabilities(probs) * probs.p_quit_after).sum(axis=1)
        return int(candidates[int(np.argmax(value))])


class DQNPolicy:
    """The trained AH-DQN, acting greedily (with the same :class:`~spotrec.rl.planning.AgentFeatures` it
    was trained with, when it was)."""

    def __init__(self, q: QNetwork, name: str = "ah_dqn", features: AgentFeatures | None = None) -> None:
        self.q = q
        self.name = name
        self.features = features

    def act(self, obs: dict[str, np.ndarray], state: SessionState, rng: np.random.Generator) -> int:
        if self.features is None:
            return greedy_action(self.q, obs)[0]
        preds, state_features = self.features(obs, state)
        return greedy_action(self.q, augment(obs, state_features), torch.from_numpy(preds).unsqueeze(0))[0]


@dataclass
class PlannedTrack:
    """One slot of a generated playlist."""

    index: int
    """Index into the session's candidate pool."""
    q_value: float
    predicted_skip: float
    """The user model's P(skip) for this track at this slot (NaN without a user model)."""


def plan_playlist(
    q: QNetwork,
    user_model: LearnedUserModel | None,
    session: SessionSpec,
    cfg: RlConfig,
    features: AgentFeatures | None = None,
) -> list[PlannedTrack]:
    """The agent's playlist for ``session``: greedy on Q, slot by slot, without repeats.

    Offline there is no listener to respond, so the session advances along the user model's most likely
    outcome: the skip run grows when an early skip is likelier than not (and stays 0 without a user model),
    and the agent's own ``features`` (those it was trained with) see that path as the session so far.
    Stops at ``playlist_length`` or when the pool is used up.
    """
    n = len(session.track_ids)
    available = np.ones(n, dtype=bool)
    # torch.tensor copies: the arrays may be read-only views of Arrow buffers on executors.
    user = torch.tensor(session.user_features, dtype=torch.float32).unsqueeze(0)
    pool = torch.tensor(session.track_features, dtype=torch.float32).unsqueeze(0)
    response = LearnedResponse(user_model) if user_model is not None else None
    out: list[PlannedTrack] = []
    skips = 0
    played: list[int] = []
    outcomes: list[int] = []
    for position in range(1, min(cfg.playlist_length, n) + 1):
        context = context_vector(position, skips, cfg)
        probs_in = None
        if features is not None:
            history = History(tuple(played), tuple(o == 2 for o in outcomes), tuple(outcomes))
            state = SessionState(session, position, skips, available.copy(), history)
            preds, state_features = features({"mask": available}, state)
            context = np.concatenate([context, state_features]).astype(np.float32)
            probs_in = torch.from_numpy(preds).unsqueeze(0)
        ctx = torch.as_tensor(context).unsqueeze(0)
        with torch.no_grad():
            values = q.masked(user, ctx, pool, torch.as_tensor(available).unsqueeze(0), probs_in)[0]
        a = int(torch.argmax(values))
        p_skip = float("nan")
        outcome = 0
        if response is not None:
            probs = response.probabilities(session, np.array([a]), position, skips)
            p_skip = float(probs.p_skip[0])
            likely = outcome_probabilities(probs)[0]
            outcome = 2 if likely[2] > 0.5 else int(np.argmax(likely[:2]))
            skips = skips + 1 if outcome == 2 else 0
        out.append(PlannedTrack(index=a, q_value=float(values[a]), predicted_skip=p_skip))
        available[a] = False
        played.append(a)
        outcomes.append(outcome)
    return out
