"""The hidden ground-truth response model: how a synthetic listener reacts to a track.

The same model decides skips, completions, saves and session quits when the world is generated, and is
reloaded (``response_model.json`` next to the ground truth) by the playlist-RL work as the "real" user
against which a learned user model and its simulator are checked (sim-to-real). It is deliberately small
and fully vectorised: every input may be a scalar or an array, and all arrays broadcast together.

Inputs, per (user, track, slot in a session):

* ``affinity``: cosine similarity of the user's and the track's taste vectors, in [-1, 1].
* ``popularity``: the track's popularity percentile in [0, 1] (1 = the most played track).
* ``position``: 0-based position of the track in the session.
* ``prev_consecutive_skips``: how many tracks in a row the user skipped just before this one.
* ``duration_ms``: the track's length (optional; ``typical_duration_ms`` when omitted).

Outcomes are exclusive: **skip** (stopped within the first ``skip_window_s`` seconds), **partial** (stopped
later, before the end) or **complete** (played to the end). With ``σ`` the logistic function,
``s = min(prev_consecutive_skips, max_consecutive_skips)`` and ``f = ln(1 + position)``::

    p_skip     = σ(skip_bias − skip_affinity_weight·affinity − skip_popularity_weight·popularity
                   + position_fatigue·f + consecutive_skip_weight·s)
    c          = σ(complete_bias + complete_affinity_weight·affinity)       # P(complete | not skipped)
    p_complete = (1 − p_skip)·c
    p_partial  = (1 − p_skip)·(1 − c)
    p_save     = p_complete·σ(save_bias + save_affinity_weight·affinity)    # saves only on completed plays
    q(k)       = σ(quit_bias + quit_skip_weight·k + quit_position_weight·f) # leave after this track, given
                                                                           # k consecutive skips incl. it
    p_quit     = p_skip·q(min(s + 1, max_consecutive_skips)) + (1 − p_skip)·q(0)

Play lengths: a skip plays ``U[min_skip_ms, W)`` ms with ``W = min(skip_window, duration)``, a partial play
``U[W, duration)`` and a complete play the whole ``duration``. Hence, with ``X = listen_threshold_s`` and
``tail(lo, hi) = clip((hi − X) / (hi − lo), 0, 1)`` the chance that ``U[lo, hi)`` exceeds ``X``::

    p_listen_gt_x = p_skip·tail(min_skip_ms, W) + p_partial·tail(W, duration) + p_complete·[duration > X]

which is exactly ``1 − p_skip`` in the default ``X = skip_window = 30 s`` (Spotify counts a stream at 30 s),
and always ``>= p_complete``. All probabilities rise (skip and quit fall) with affinity.

**Long-term effects** (each off at its default weight 0, which gives exactly the formulas above; turned on
by ``generate.coherence_weight`` / ``artist_fatigue_weight`` / ``patience_weight``). They make the value
of a track depend on the session so far, so the likeliest completion at each step is no longer optimal:

* coherence: ``d = 1 − cos(v_prev, v)`` between the hidden taste vectors (the world's "sound"; the audio
  features are drawn around each taste group's profile) of the previous and this track (0 for the first)
  adds ``coherence_weight·d`` to the skip log-odds;
* artist fatigue: with ``n`` earlier plays of the same artist in the session, every term above uses the
  worn-off affinity ``a' = affinity − artist_fatigue_weight·n``;
* patience: a satisfaction state ``S`` (0 at the start) moves after every track,
  ``S' = satisfaction_decay·S + (a' − satisfaction_reference)`` after a play and
  ``S' = satisfaction_decay·S − satisfaction_skip_cost`` after a skip, and the quit log-odds after the
  track get ``− patience_weight·S'``: a listener who has heard tracks they love stays longer, one fed
  familiar but unloved hits (completed, popularity lowers the skip chance, yet ``a'`` is low) leaves.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from spotrec.config import GenerateConfig

ArrayLike = float | int | np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _tail(lo: np.ndarray, hi: np.ndarray, x: float) -> np.ndarray:
    """P(U[lo, hi) > x), with a point mass at ``lo`` when the interval is empty."""
    width = hi - lo
    safe = np.where(width > 0, width, 1.0)
    return np.where(width > 0, np.clip((hi - x) / safe, 0.0, 1.0), (lo > x).astype(float))


@dataclass(frozen=True)
class ResponseModel:
    """Parameters of the ground-truth listener (see the module docstring for the formulas)."""

    skip_bias: float = 0.3
    """Skip log-odds of a neutral (affinity 0, popularity 0) track at the start of a session."""
    skip_affinity_weight: float = 3.0
    """How much taste match lowers the skip log-odds (per unit of cosine affinity)."""
    skip_popularity_weight: float = 0.8
    """How much popularity lowers the skip log-odds (familiar hits are skipped less)."""
    position_fatigue: float = 0.15
    """Skip log-odds added per ``ln(1 + position)``: listeners get pickier as a session goes on."""
    consecutive_skip_weight: float = 0.5
    """Skip log-odds added per preceding consecutive skip ("browsing mode")."""
    max_consecutive_skips: int = 5
    """Cap on the consecutive-skip count used by the skip and quit terms."""
    complete_bias: float = 0.6
    """Log-odds of playing to the end, given no early skip, at affinity 0."""
    complete_affinity_weight: float = 2.0
    """Taste match raises the completion log-odds by this per unit affinity."""
    skip_window_s: float = 30.0
    """A skip is a stop within this many seconds of the start."""
    listen_threshold_s: float = 30.0
    """X in ``p_listen_gt_x``: the "listened for more than X seconds" signal used as RL reward."""
    min_skip_ms: int = 1000
    """Shortest play of a skipped track."""
    save_bias: float = -6.0
    """Log-odds of saving a completed track at affinity 0 (saves are rare)."""
    save_affinity_weight: float = 3.5
    """Taste match raises the save log-odds by this per unit affinity."""
    quit_bias: float = -3.6
    """Log-odds of leaving the session after a track at position 0 that was not skipped."""
    quit_skip_weight: float = 0.7
    """Quit log-odds added per consecutive skip ending at this track."""
    quit_position_weight: float = 0.35
    """Quit log-odds added per ``ln(1 + position)``."""
    typical_duration_ms: float = 210_000.0
    """Duration assumed by :meth:`probabilities` when none is given."""
    coherence_weight: float = 0.0
    """Skip log-odds per unit of taste distance ``1 − cos`` to the previous track (0: off)."""
    artist_fatigue_weight: float = 0.0
    """Affinity worn off per earlier play of the same artist in the session (0: off)."""
    patience_weight: float = 0.0
    """Quit log-odds removed per unit of session satisfaction ``S`` (0: off, the quit chance ignores S)."""
    satisfaction_decay: float = 0.8
    """How much of the satisfaction carries over to the next track."""
    satisfaction_reference: float = 0.3
    """A played track raises satisfaction by its (worn-off) affinity minus this."""
    satisfaction_skip_cost: float = 0.5
    """A skipped track lowers satisfaction by this."""

    @property
    def long_term(self) -> bool:
        """Whether any sequence effect is on (then the inputs of a track depend on the session so far)."""
        return bool(self.coherence_weight or self.artist_fatigue_weight or self.patience_weight)

    def satisfaction_after(self, satisfaction: ArrayLike, affinity: ArrayLike, skipped: ArrayLike) -> np.ndarray:
        """``S'`` after a track of (worn-off) ``affinity`` was played or ``skipped`` (module docstring)."""
        carried = self.satisfaction_decay * np.asarray(satisfaction, dtype=float)
        gain = np.asarray(affinity, dtype=float) - self.satisfaction_reference
        return carried + np.where(np.asarray(skipped, dtype=bool), -self.satisfaction_skip_cost, gain)

    # -- probabilities -------------------------------------------------------------------------
    def _parts(
        self,
        affinity: ArrayLike,
        popularity: ArrayLike,
        position: ArrayLike,
        prev_consecutive_skips: ArrayLike,
        duration_ms: ArrayLike | None,
        distance: ArrayLike = 0.0,
        artist_repeats: ArrayLike = 0.0,
        satisfaction: ArrayLike = 0.0,
    ) -> dict[str, np.ndarray]:
        duration = self.typical_duration_ms if duration_ms is None else duration_ms
        aff, pop, pos, prev, dur, dist, reps, sat = np.broadcast_arrays(
            np.asarray(affinity, dtype=float),
            np.asarray(popularity, dtype=float),
            np.asarray(position, dtype=float),
            np.asarray(prev_consecutive_skips, dtype=float),
            np.asarray(duration, dtype=float),
            np.asarray(distance, dtype=float),
            np.asarray(artist_repeats, dtype=float),
            np.asarray(satisfaction, dtype=float),
        )
        # Each long-term term is added only when on, so the default model is bit-for-bit the plain one.
        if self.artist_fatigue_weight:
            aff = aff - self.artist_fatigue_weight * reps
        cap = float(self.max_consecutive_skips)
        s = np.minimum(prev, cap)
        fatigue = np.log1p(pos)
        skip_logit = (
            self.skip_bias
            - self.skip_affinity_weight * aff
            - self.skip_popularity_weight * pop
            + self.position_fatigue * fatigue
            + self.consecutive_skip_weight * s
        )
        if self.coherence_weight:
            skip_logit = skip_logit + self.coherence_weight * dist
        p_skip = _sigmoid(skip_logit)
        c = _sigmoid(self.complete_bias + self.complete_affinity_weight * aff)
        quit_skip_logit = (
            self.quit_bias + self.quit_skip_weight * np.minimum(s + 1.0, cap) + self.quit_position_weight * fatigue
        )
        quit_play_logit = self.quit_bias + self.quit_position_weight * fatigue
        if self.patience_weight:
            quit_skip_logit = quit_skip_logit - self.patience_weight * self.satisfaction_after(sat, aff, True)
            quit_play_logit = quit_play_logit - self.patience_weight * self.satisfaction_after(sat, aff, False)
        q_after_skip = _sigmoid(quit_skip_logit)
        q_after_play = _sigmoid(quit_play_logit)
        save = _sigmoid(self.save_bias + self.save_affinity_weight * aff)
        window = np.minimum(self.skip_window_s * 1000.0, dur)
        return {
            "p_skip": p_skip,
            "c": c,
            "q_after_skip": q_after_skip,
            "q_after_play": q_after_play,
            "save": save,
            "window": window,
            "duration": dur,
            "affinity": aff,
        }

    def probabilities(
        self,
        affinity: ArrayLike,
        popularity: ArrayLike,
        position: ArrayLike,
        prev_consecutive_skips: ArrayLike,
        duration_ms: ArrayLike | None = None,
        *,
        distance: ArrayLike = 0.0,
        artist_repeats: ArrayLike = 0.0,
        satisfaction: ArrayLike = 0.0,
    ) -> dict[str, np.ndarray]:
        """Outcome probabilities for each input (arrays broadcast together).

        ``distance`` (taste distance to the previous track), ``artist_repeats`` (earlier plays of the
        artist in the session) and ``satisfaction`` (``S`` before this track) feed the long-term terms and
        are ignored while those are off.

        Returns:
            ``p_skip``, ``p_partial``, ``p_complete`` (these three sum to 1), ``p_listen_gt_x``,
            ``p_save`` (a save happens on a completed play) and ``p_quit`` (the listener leaves the
            session after this track, marginalised over whether it is skipped).
        """
        p = self._parts(
            affinity, popularity, position, prev_consecutive_skips, duration_ms, distance, artist_repeats, satisfaction
        )
        p_skip = p["p_skip"]
        p_complete = (1.0 - p_skip) * p["c"]
        p_partial = (1.0 - p_skip) * (1.0 - p["c"])
        x_ms = self.listen_threshold_s * 1000.0
        lo = np.full_like(p["window"], float(self.min_skip_ms))
        p_listen = (
            p_skip * _tail(np.minimum(lo, p["window"]), p["window"], x_ms)
            + p_partial * _tail(p["window"], p["duration"], x_ms)
            + p_complete * (p["duration"] > x_ms)
        )
        return {
            "p_skip": p_skip,
            "p_partial": p_partial,
            "p_complete": p_complete,
            "p_listen_gt_x": p_listen,
            "p_save": p_complete * p["save"],
            "p_quit": p_skip * p["q_after_skip"] + (1.0 - p_skip) * p["q_after_play"],
        }

    def sample(
        self,
        rng: np.random.Generator,
        affinity: ArrayLike,
        popularity: ArrayLike,
        position: ArrayLike,
        prev_consecutive_skips: ArrayLike,
        duration_ms: ArrayLike | None = None,
        *,
        distance: ArrayLike = 0.0,
        artist_repeats: ArrayLike = 0.0,
        satisfaction: ArrayLike = 0.0,
    ) -> dict[str, np.ndarray]:
        """Draw one outcome per input from the distribution of :meth:`probabilities`.

        Exactly four uniforms per input are drawn from ``rng`` (outcome, play length, save, quit), so a
        seeded generator reproduces the same outcomes.

        Returns:
            ``skipped``, ``completed``, ``saved``, ``quit``, ``listened_gt_x`` (bool arrays) and
            ``ms_played`` (int64: skips a short fraction of the skip window, partial plays between the
            window and the end, completes the full duration) and ``satisfaction`` (float: ``S'`` after it).
        """
        p = self._parts(
            affinity, popularity, position, prev_consecutive_skips, duration_ms, distance, artist_repeats, satisfaction
        )
        shape = p["p_skip"].shape
        u_outcome, u_length, u_save, u_quit = rng.random((4, *shape))
        skipped = u_outcome < p["p_skip"]
        completed = ~skipped & (u_outcome < p["p_skip"] + (1.0 - p["p_skip"]) * p["c"])
        window, duration = p["window"], p["duration"]
        lo = np.minimum(float(self.min_skip_ms), window)
        skip_ms = lo + u_length * (window - lo)
        partial_ms = window + u_length * (duration - window)
        ms = np.where(skipped, skip_ms, np.where(completed, duration, partial_ms))
        ms_played = np.floor(ms).astype(np.int64)
        quit_p = np.where(skipped, p["q_after_skip"], p["q_after_play"])
        return {
            "skipped": skipped,
            "completed": completed,
            "saved": completed & (u_save < p["save"]),
            "quit": u_quit < quit_p,
            "listened_gt_x": ms_played > self.listen_threshold_s * 1000.0,
            "ms_played": ms_played,
            "satisfaction": self.satisfaction_after(np.broadcast_to(satisfaction, shape), p["affinity"], skipped),
        }

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResponseModel:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error (a stale or foreign file)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ResponseModel parameter(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

    @classmethod
    def for_world(cls, cfg: GenerateConfig) -> ResponseModel:
        """The default listener with the long-term switches of a ``GenerateConfig`` (all 0: today's)."""
        return cls(
            coherence_weight=cfg.coherence_weight,
            artist_fatigue_weight=cfg.artist_fatigue_weight,
            patience_weight=cfg.patience_weight,
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ResponseModel:
        return cls.from_dict(json.loads(Path(path).read_text()))
