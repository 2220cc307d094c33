"""What AH-DQN knows of the session beyond the env's observation, so that it can plan.

The env's observation is the user, the position, the skip run and the pool. With long-term effects in the
listener (coherence, artist fatigue, patience) the value of a track depends on what was played before, so the
agent's state must carry the session so far. :class:`SequentialAgentFeatures` computes it from the agent's own
sequential user model (:mod:`spotrec.rl.sequential`), never from the environment's response model, so an
agent evaluated against the true listener sees exactly what it saw in the learned simulator:

* per candidate (the Q network's prediction block, :data:`PREDICTION_COLUMNS`): the GRU model's
  P(complete), P(skip), P(listen > X) given the session so far, the expected P(the session ends after it)
  under its outcome distribution (the termination head; 0 without one), and the candidate's three sequence
  features (distance to the previous track, smallest distance to any earlier one, near-duplicates played);
* per state (appended to the context block): the GRU state after the plays so far and the session's skip
  and completion fractions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from spotrec.rl.env import LearnedResponse, SessionState, outcome_probabilities
from spotrec.rl.features import FeatureLayout
from spotrec.rl.sequential import (
    SEQUENCE_FEATURES,
    SequentialResponse,
    SequentialUserModel,
    candidate_sequence_features,
    similarity_columns,
)
from spotrec.rl.user_model import LearnedUserModel

PREDICTION_COLUMNS = ("p_complete", "p_skip", "p_listen", "p_end", *SEQUENCE_FEATURES)
"""The per-candidate block of :class:`SequentialAgentFeatures` (the first three in the heads' order, which
the Q network's reward prior reads)."""


class AgentFeatures(Protocol):
    """Extra inputs of the Q network computed by the agent from the observation and the session so far."""

    n_predictions: int
    """Columns of the per-candidate block."""
    quit_prior: bool
    """Whether column 3 of the block is the termination chance, to be priced into the reward prior."""

    def layout(self, env_layout: FeatureLayout) -> FeatureLayout:
        """The Q network's layout: the env's, with the state features appended to the context block."""
        ...

    def __call__(self, obs: dict[str, np.ndarray], state: SessionState) -> tuple[np.ndarray, np.ndarray]:
        """((pool_size, n_predictions) per-candidate block, zeros on unplayable slots; (n_state,) state)."""
        ...


def augment(obs: dict[str, np.ndarray], state_features: np.ndarray) -> dict[str, np.ndarray]:
    """``obs`` with ``state_features`` appended to its context (what the Q network and replay buffer see)."""
    out = dict(obs)
    out["context"] = np.concatenate([obs["context"], state_features]).astype(np.float32)
    return out


class SequentialAgentFeatures:
    """:class:`AgentFeatures` from the agent's copy of the GRU user model (see the module docstring)."""

    n_predictions = len(PREDICTION_COLUMNS)

    def __init__(
        self, model: SequentialUserModel, pool_size: int, quit_prior: bool = True, gru_state: bool = True
    ) -> None:
        """``quit_prior``: the Q network's reward prior also counts the expected quit reward
        (``reward_quit * p_end``), so it starts from greedy on the whole immediate reward. ``gru_state``:
        put the GRU state in the agent's state (else only the skip and completion fractions)."""
        self.model = model
        self.quit_prior = quit_prior and model.has_termination
        self.gru_state = gru_state
        self.pool_size = pool_size
        self._response = SequentialResponse(model)
        self.state_columns = (
            *(f"a_gru{i}" for i in range(model.net.gru_hidden if gru_state else 0)),
            "a_skip_fraction",
            "a_complete_fraction",
        )

    def layout(self, env_layout: FeatureLayout) -> FeatureLayout:
        return replace(env_layout, context=(*env_layout.context, *self.state_columns))

    def __call__(self, obs: dict[str, np.ndarray], state: SessionState) -> tuple[np.ndarray, np.ndarray]:
        session, history = state.session, state.history
        preds = np.zeros((self.pool_size, self.n_predictions), np.float32)
        candidates = np.flatnonzero(state.available)
        if len(candidates):
            probs = self._response.probabilities(session, candidates, state.position, state.consecutive_skips, history)
            p_end = (
                np.zeros(len(candidates))
                if probs.p_quit_after is None
                else (outcome_probabilities(probs) * probs.p_quit_after).sum(axis=1)
            )
            seq = self.model.candidate_sequence_features(
                session.track_features[list(history.played)], session.track_features[candidates]
            )
            preds[candidates] = np.column_stack([probs.p_complete, probs.p_skip, probs.p_listen, p_end, seq])
        h = self._response.state(session, history) if self.gru_state else np.zeros(0, np.float32)
        return preds, np.concatenate([h, _session_fractions(state)]).astype(np.float32)


def _session_fractions(state: SessionState) -> np.ndarray:
    """The session's (skip fraction, completion fraction) so far (0, 0 before the first play)."""
    outcomes = state.history.outcomes
    n = max(len(outcomes), 1)
    return np.array([sum(o == 2 for o in outcomes) / n, sum(o == 0 for o in outcomes) / n], np.float32)


SESSION_PREDICTION_COLUMNS = ("p_complete", "p_skip", "p_listen", *SEQUENCE_FEATURES)
"""The per-candidate block of :class:`SessionAgentFeatures` (the first three in the order of
:data:`~spotrec.rl.user_model.HEADS`, which the Q network's reward prior reads)."""


class SessionAgentFeatures:
    """:class:`AgentFeatures` from the (non-sequential) MLP user model plus what the session so far says of
    each candidate, computed from the pool's own track features.

    Per candidate: the MLP's P(complete), P(skip), P(listen > X) at this position and skip run, and the three
    sequence features of :func:`~spotrec.rl.sequential.candidate_sequence_features` (distance to the previous
    track, smallest distance to any earlier one, near-duplicates played), on the ALS track factors when the
    layout has them; per state the session's skip and completion fractions. The MLP cannot see coherence or
    fatigue, but the action stream can learn from these columns what they cost later in the session. Every
    input is the agent's own (user model, track features, its own plays), so the agent sees the same in the
    learned simulator, against the true listener and when it plans playlists on executors.
    """

    n_predictions = len(SESSION_PREDICTION_COLUMNS)
    quit_prior = False
    state_columns = ("a_skip_fraction", "a_complete_fraction")

    def __init__(self, model: LearnedUserModel, columns: np.ndarray, centre: np.ndarray) -> None:
        self.model = model
        self.columns = np.asarray(columns, dtype=np.int64)
        self.centre = np.asarray(centre, dtype=np.float32)
        self._response = LearnedResponse(model)

    @classmethod
    def fit(cls, model: LearnedUserModel, layout: FeatureLayout, train_tracks: np.ndarray) -> SessionAgentFeatures:
        """Distances on :func:`~spotrec.rl.sequential.similarity_columns`, centred on the training rows' mean."""
        columns = similarity_columns(layout)
        centre = np.asarray(train_tracks, dtype=np.float32)[:, columns].mean(axis=0)
        return cls(model, columns, centre)

    def spec(self) -> dict[str, Any]:
        """What a checkpoint stores to rebuild these features (with the user model it holds anyway)."""
        return {"kind": "session", "columns": self.columns.tolist(), "centre": self.centre.tolist()}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], model: LearnedUserModel) -> SessionAgentFeatures:
        if spec.get("kind") != "session":
            raise ValueError(f"unknown agent features in the checkpoint: {spec.get('kind')!r}")
        return cls(model, np.array(spec["columns"]), np.array(spec["centre"]))

    def layout(self, env_layout: FeatureLayout) -> FeatureLayout:
        return replace(env_layout, context=(*env_layout.context, *self.state_columns))

    def __call__(self, obs: dict[str, np.ndarray], state: SessionState) -> tuple[np.ndarray, np.ndarray]:
        session = state.session
        width = len(obs["mask"]) if "mask" in obs else len(state.available)
        preds = np.zeros((width, self.n_predictions), np.float32)
        candidates = np.flatnonzero(state.available)
        if len(candidates):
            probs = self._response.probabilities(session, candidates, state.position, state.consecutive_skips)
            seq = candidate_sequence_features(
                session.track_features[list(state.history.played)],
                session.track_features[candidates],
                self.columns,
                self.centre,
            )
            preds[candidates] = np.column_stack([probs.p_complete, probs.p_skip, probs.p_listen, seq])
        return preds, _session_fractions(state)
