"""The playlist simulator: a ``gymnasium.Env`` in which an agent builds a session track by track.

Each episode is one listening session of one user with a candidate pool (the tracks a recommender
retrieved for that user at that time; pools differ per user and over time). At every step the agent
picks a track from the pool; a response model (the learned user model, or on the synthetic world the
true response model) gives the listener's probabilities of completing it, skipping it and listening past
``X`` seconds; one outcome is drawn, the reward comes from the configured mapping, the track leaves the
pool (no repeats), and the session ends at ``playlist_length`` tracks, when the pool runs out, or when
the listener quits (after a run of skipped tracks, or by the response model's own quit probability).

Observations have a fixed size so any agent and ``gymnasium.utils.env_checker.check_env`` accept them:
the pool is padded to ``pool_size`` rows and a ``mask`` marks the tracks still playable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from spotrec import columns as C
from spotrec.config import RlConfig
from spotrec.rl.features import SKIP_RUN_CAP, FeatureLayout
from spotrec.rl.user_model import COMPLETED, LISTENED, SKIPPED, LearnedUserModel

if TYPE_CHECKING:
    from spotrec.synth.truth import GroundTruth

OUTCOMES = ("complete", "listen", "skip")
"""``complete``: played to the end; ``listen``: past the listen threshold, not to the end; ``skip``: before it."""


@dataclass
class SessionSpec:
    """One user's session to fill: who listens and what can be played."""

    user_id: str
    user_features: np.ndarray
    """(user_dim,) the user context block of :class:`~spotrec.rl.features.FeatureLayout`."""
    track_ids: np.ndarray
    """(n,) candidate track ids."""
    track_features: np.ndarray
    """(n, track_dim) candidate track blocks."""
    popularity: np.ndarray | None = None
    """(n,) popularity per candidate (popularity baseline); defaults to zeros."""
    scores: np.ndarray | None = None
    """(n,) a recommender's score per candidate (e.g. ALS; the score-order baseline); defaults to zeros."""

    def __post_init__(self) -> None:
        n = len(self.track_ids)
        self.user_features = np.asarray(self.user_features, dtype=np.float32)
        self.track_features = np.asarray(self.track_features, dtype=np.float32).reshape(n, -1)
        self.popularity = np.zeros(n) if self.popularity is None else np.asarray(self.popularity, dtype=np.float64)
        self.scores = np.zeros(n) if self.scores is None else np.asarray(self.scores, dtype=np.float64)


@dataclass
class ResponseProbs:
    """A listener's response probabilities for some candidates (arrays of the same length)."""

    p_complete: np.ndarray
    p_skip: np.ndarray
    p_listen: np.ndarray
    p_quit_after: np.ndarray | None = None
    """(n, 3) probability that the listener ends the session after each outcome (complete, listen, skip);
    None: the env's consecutive-skip rule decides."""


@dataclass(frozen=True)
class History:
    """The session so far, for a response model whose answers depend on it (``sequential = True``)."""

    played: tuple[int, ...] = ()
    """Pool indices of the tracks played, in order (invalid actions are not listed)."""
    skipped: tuple[bool, ...] = ()
    """Whether each of them was skipped."""
    outcomes: tuple[int, ...] = ()
    """Each one's outcome as an index into :data:`OUTCOMES` (complete, listen, skip)."""


class ResponseModel(Protocol):
    """How a listener responds; the learned user model and the synthetic world's truth both fit this."""

    def probabilities(
        self, session: SessionSpec, candidates: np.ndarray, position: int, consecutive_skips: int
    ) -> ResponseProbs:
        """Response probabilities for ``session``'s candidates at indices ``candidates``.

        Args:
            session: the session being filled.
            candidates: indices into the session's pool.
            position: 1-based position in the session the track would be played at.
            consecutive_skips: skipped tracks in a row just before.
        """
        ...


def respond(
    response: ResponseModel,
    session: SessionSpec,
    candidates: np.ndarray,
    position: int,
    consecutive_skips: int,
    history: History,
) -> ResponseProbs:
    """``response.probabilities``, handing it the session so far when it declares ``sequential = True``."""
    if getattr(response, "sequential", False):
        return response.probabilities(  # type: ignore[call-arg]
            session, candidates, position, consecutive_skips, history=history
        )
    return response.probabilities(session, candidates, position, consecutive_skips)


def context_vector(position: int, consecutive_skips: int, cfg: RlConfig) -> np.ndarray:
    """The session-context block exactly as :func:`spotrec.rl.features.training_rows` builds it."""
    return np.array(
        [min(position / cfg.max_position, 1.0), min(consecutive_skips, SKIP_RUN_CAP) / SKIP_RUN_CAP],
        dtype=np.float32,
    )


class LearnedResponse:
    """The learned user model as a :class:`ResponseModel` (the simulator's default world).

    With ``rl.termination: learned`` (and a model trained with its termination head) the head's
    P(end | outcome) ends sessions; otherwise the env's consecutive-skip rule does.
    """

    def __init__(self, model: LearnedUserModel) -> None:
        self.model = model

    def probabilities(
        self, session: SessionSpec, candidates: np.ndarray, position: int, consecutive_skips: int
    ) -> ResponseProbs:
        ctx = context_vector(position, consecutive_skips, self.model.cfg)
        track = session.track_features[candidates]
        p = self.model.probabilities(session.user_features, track, ctx)
        quit_after = None
        if self.model.cfg.termination == "learned" and self.model.has_termination:
            quit_after = self.model.end_probabilities(session.user_features, track, ctx)
        return ResponseProbs(
            p_complete=p[:, COMPLETED], p_skip=p[:, SKIPPED], p_listen=p[:, LISTENED], p_quit_after=quit_after
        )


class TableResponse:
    """A response model that looks each track's probabilities up by id (scripted worlds, what-if checks).

    Position and skip run are ignored; unknown tracks get ``default``.
    """

    def __init__(
        self,
        table: dict[str, tuple[float, float, float]],
        default: tuple[float, float, float] = (0.5, 0.5, 0.5),
        quit_after: dict[str, float] | None = None,
    ) -> None:
        """``table`` maps track id to (P(complete), P(skip), P(listen > X)).

        ``quit_after`` (optional) maps track id to the chance the listener leaves right after it, whatever
        the outcome (0 for tracks not listed); then it replaces the env's consecutive-skip rule.
        """
        self.table = table
        self.default = default
        self.quit_after = quit_after

    def probabilities(
        self, session: SessionSpec, candidates: np.ndarray, position: int, consecutive_skips: int
    ) -> ResponseProbs:
        ids = [str(t) for t in session.track_ids[candidates]]
        p = np.array([self.table.get(t, self.default) for t in ids], dtype=np.float64).reshape(-1, 3)
        quit_after = None
        if self.quit_after is not None:
            q = np.array([self.quit_after.get(t, 0.0) for t in ids], dtype=np.float64)
            quit_after = np.repeat(q[:, None], 3, axis=1)
        return ResponseProbs(p_complete=p[:, 0], p_skip=p[:, 1], p_listen=p[:, 2], p_quit_after=quit_after)


class TrueResponse:
    """The synthetic world's ground-truth listener (:mod:`spotrec.synth.response`) as a :class:`ResponseModel`.

    Evaluating a policy here instead of in the learned simulator measures how well its gains transfer to
    the "real" users the events were generated from. The truth's own quit probabilities (after a skip /
    after a play) replace the env's consecutive-skip rule. With the truth's long-term effects on
    (:attr:`sequential`), the env hands it the session so far, from which it rebuilds exactly what the
    generator tracked: the previous track's taste distance, earlier plays of each artist and the
    satisfaction ``S``.
    """

    def __init__(self, truth: GroundTruth) -> None:
        self.truth = truth
        self._duration = truth.tracks.set_index(C.TRACK_ID)["duration_ms"].astype(np.float64)
        self._artist = truth.tracks.set_index(C.TRACK_ID)[C.ARTIST_ID]
        self._pool: tuple[SessionSpec, np.ndarray, np.ndarray, np.ndarray] | None = None
        """The last session's (spec, affinity, popularity, duration) per candidate: an episode asks about the
        same pool at every step, so the id lookups run once per session instead of once per step."""
        self._seq_pool: tuple[SessionSpec, np.ndarray, np.ndarray] | None = None
        """The last session's (spec, taste vectors, artist codes) per candidate (sequential truth only)."""

    @property
    def sequential(self) -> bool:
        """Whether the truth's answers depend on the session so far (any long-term effect on)."""
        return self.truth.response_model.long_term

    def batch(
        self, user_ids: Sequence[str], track_ids: Sequence[str], positions: np.ndarray, consecutive_skips: np.ndarray
    ) -> ResponseProbs:
        """True probabilities for arbitrary (user, track, 1-based position, skip run) rows (e.g. test events)."""
        track_ids = [str(t) for t in track_ids]
        affinity = self.truth.affinity([str(u) for u in user_ids], track_ids)
        popularity = self.truth.popularity(track_ids)
        duration = self._duration.loc[track_ids].to_numpy()
        return self._probs(affinity, popularity, positions, consecutive_skips, duration)

    def _probs(
        self,
        affinity: np.ndarray,
        popularity: np.ndarray,
        positions: np.ndarray,
        consecutive_skips: np.ndarray,
        duration: np.ndarray,
        **long_term: Any,
    ) -> ResponseProbs:
        model = self.truth.response_model
        # The truth counts positions from 0; the env from 1.
        args = (affinity, popularity, np.asarray(positions) - 1, np.asarray(consecutive_skips), duration)
        p = model.probabilities(*args, **long_term)
        # Quit chances conditional on the outcome (the public p_quit is marginalised over skip / no skip).
        parts = model._parts(*args, **long_term)
        quit_after = np.stack([parts["q_after_play"], parts["q_after_play"], parts["q_after_skip"]], axis=-1)
        return ResponseProbs(
            p_complete=p["p_complete"], p_skip=p["p_skip"], p_listen=p["p_listen_gt_x"], p_quit_after=quit_after
        )

    def _long_term_inputs(self, session: SessionSpec, candidates: np.ndarray, history: History) -> dict[str, Any]:
        """``distance``, ``artist_repeats`` and ``satisfaction`` per candidate after ``history``."""
        if self._seq_pool is None or self._seq_pool[0] is not session:
            ids = [str(t) for t in session.track_ids]
            codes = np.unique(self._artist.loc[ids].to_numpy().astype(str), return_inverse=True)[1]
            self._seq_pool = (session, self.truth.track_vectors(ids), codes)
        _, vectors, artist = self._seq_pool
        assert self._pool is not None
        affinity = self._pool[1]
        model = self.truth.response_model
        played = np.asarray(history.played, dtype=np.int64)
        counts = np.zeros(artist.max() + 1)
        satisfaction = 0.0
        for k, skipped in zip(played, history.skipped):  # replay the session: S and the artist counts
            worn = affinity[k] - model.artist_fatigue_weight * counts[artist[k]]
            satisfaction = float(model.satisfaction_after(satisfaction, worn, skipped))
            counts[artist[k]] += 1
        distance = 1.0 - vectors[candidates] @ vectors[played[-1]] if len(played) else np.zeros(len(candidates))
        return {"distance": distance, "artist_repeats": counts[artist[candidates]], "satisfaction": satisfaction}

    def probabilities(
        self,
        session: SessionSpec,
        candidates: np.ndarray,
        position: int,
        consecutive_skips: int,
        history: History | None = None,
    ) -> ResponseProbs:
        if self._pool is None or self._pool[0] is not session:
            ids = [str(t) for t in session.track_ids]
            self._pool = (
                session,
                self.truth.affinity([session.user_id] * len(ids), ids),
                self.truth.popularity(ids),
                self._duration.loc[ids].to_numpy(),
            )
        _, affinity, popularity, duration = self._pool
        n = len(candidates)
        extra = self._long_term_inputs(session, candidates, history or History()) if self.sequential else {}
        return self._probs(
            affinity[candidates],
            popularity[candidates],
            np.full(n, position),
            np.full(n, consecutive_skips),
            duration[candidates],
            **extra,
        )


def outcome_probabilities(probs: ResponseProbs) -> np.ndarray:
    """(n, 3) probabilities of the exclusive outcomes complete / listen / skip.

    Completing implies listening past the threshold, so P(listen only) = max(P(listen) - P(complete), 0)
    and P(skip early) = 1 - max(P(listen), P(complete)).
    """
    pc = np.clip(probs.p_complete, 0.0, 1.0)
    pl = np.maximum(np.clip(probs.p_listen, 0.0, 1.0), pc)
    return np.stack([pc, pl - pc, 1.0 - pl], axis=-1)


def expected_reward(probs: ResponseProbs, cfg: RlConfig) -> np.ndarray:
    """Immediate expected reward per candidate under the configured mapping (quit penalty excluded)."""
    rewards = np.array([cfg.reward_complete, cfg.reward_listen, cfg.reward_skip])
    return outcome_probabilities(probs) @ rewards


@dataclass
class SessionState:
    """What a policy may look at besides the observation (baselines read popularity / scores here)."""

    session: SessionSpec
    position: int
    """1-based position of the next track."""
    consecutive_skips: int
    available: np.ndarray
    """(n,) bool: candidates not played yet."""
    history: History = History()
    """The session so far (what a sequential response model is given)."""


SessionSource = Sequence[SessionSpec] | Callable[[np.random.Generator], SessionSpec]


class PlaylistEnv(gym.Env):  # type: ignore[type-arg]
    """Fill a session from a candidate pool; rewards come from the response model's sampled outcome.

    Observation (``spaces.Dict``): ``user`` (user_dim,), ``context`` (position, skip run; both in [0, 1]),
    ``pool`` (pool_size, track_dim) zero-padded, ``mask`` (pool_size,) 1 for playable tracks.
    Action: index into the pool. A masked action (padding or already played) plays nothing, earns
    ``reward_skip`` and counts as a skip, so even a random agent's episodes end.

    ``reset(options={"session": SessionSpec})`` starts that session; otherwise one is drawn from
    ``sessions`` (a list, sampled uniformly, or a callable taking the env's RNG).
    """

    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        sessions: SessionSource,
        response: ResponseModel,
        cfg: RlConfig,
        layout: FeatureLayout,
    ) -> None:
        super().__init__()
        self.sessions = sessions
        self.response = response
        self.cfg = cfg
        self.layout = layout
        self.pool_size = cfg.pool_size
        inf = np.float32(np.inf)
        self.observation_space = spaces.Dict(
            {
                "user": spaces.Box(-inf, inf, shape=(layout.user_dim,), dtype=np.float32),
                "context": spaces.Box(0.0, 1.0, shape=(layout.context_dim,), dtype=np.float32),
                "pool": spaces.Box(-inf, inf, shape=(cfg.pool_size, layout.track_dim), dtype=np.float32),
                "mask": spaces.MultiBinary(cfg.pool_size),
            }
        )
        self.action_space = spaces.Discrete(cfg.pool_size)
        self._session: SessionSpec | None = None
        self._pool = np.zeros((cfg.pool_size, layout.track_dim), dtype=np.float32)
        self._mask = np.zeros(cfg.pool_size, dtype=np.int8)
        self._position = 1
        self._skips = 0
        self._history: tuple[list[int], list[bool], list[int]] = ([], [], [])

    # -- state -------------------------------------------------------------------------------
    @property
    def session(self) -> SessionSpec:
        if self._session is None:
            raise RuntimeError("call reset() first")
        return self._session

    def state(self) -> SessionState:
        n = len(self.session.track_ids)
        return SessionState(self.session, self._position, self._skips, self._mask[:n].astype(bool), self._history_now())

    def _history_now(self) -> History:
        return History(tuple(self._history[0]), tuple(self._history[1]), tuple(self._history[2]))

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "user": self.session.user_features.copy(),
            "context": context_vector(self._position, self._skips, self.cfg),
            "pool": self._pool.copy(),
            "mask": self._mask.copy(),
        }

    # -- gymnasium API -----------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        if options and options.get("session") is not None:
            session = options["session"]
        elif callable(self.sessions):
            session = self.sessions(self.np_random)
        else:
            session = self.sessions[int(self.np_random.integers(len(self.sessions)))]
        n = len(session.track_ids)
        if n > self.pool_size or n == 0:
            raise ValueError(f"session of {session.user_id} has {n} candidates; the env takes 1..{self.pool_size}")
        if session.track_features.shape[1] != self.layout.track_dim:
            raise ValueError(
                f"track features have {session.track_features.shape[1]} columns, expected {self.layout.track_dim}"
            )
        self._session = session
        self._pool[:] = 0.0
        self._pool[:n] = session.track_features
        self._mask[:] = 0
        self._mask[:n] = 1
        self._position, self._skips = 1, 0
        self._history = ([], [], [])
        return self._obs(), {"user_id": session.user_id}

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = int(action)
        info: dict[str, Any] = {"position": self._position}
        quit_after: np.ndarray | None = None
        if not (0 <= a < self.pool_size) or not self._mask[a]:
            outcome, reward = "skip", self.cfg.reward_skip
            info.update(invalid_action=True, track_id=None)
        else:
            probs = respond(
                self.response, self.session, np.array([a]), self._position, self._skips, self._history_now()
            )
            dist = outcome_probabilities(probs)[0]
            u = self.np_random.random()
            outcome = OUTCOMES[0] if u < dist[0] else OUTCOMES[1] if u < dist[0] + dist[1] else OUTCOMES[2]
            reward = {"complete": self.cfg.reward_complete, "listen": self.cfg.reward_listen}.get(
                outcome, self.cfg.reward_skip
            )
            quit_after = None if probs.p_quit_after is None else np.asarray(probs.p_quit_after)[0]
            info.update(
                invalid_action=False,
                track_id=self.session.track_ids[a],
                p_complete=float(probs.p_complete[0]),
                p_skip=float(probs.p_skip[0]),
                p_listen=float(probs.p_listen[0]),
            )
            self._mask[a] = 0
            self._history[0].append(a)
            self._history[1].append(outcome == "skip")
            self._history[2].append(OUTCOMES.index(outcome))
        self._skips = self._skips + 1 if outcome == "skip" else 0
        self._position += 1
        if quit_after is not None:
            quit_session = bool(self.np_random.random() < quit_after[OUTCOMES.index(outcome)])
        else:
            quit_session = bool(
                self._skips >= self.cfg.quit_after_skips and self.np_random.random() < self.cfg.quit_probability
            )
        if quit_session:
            reward += self.cfg.reward_quit
        info.update(outcome=outcome, quit=quit_session)
        terminated = quit_session or self._position > self.cfg.playlist_length or not self._mask.any()
        return self._obs(), float(reward), bool(terminated), False, info
