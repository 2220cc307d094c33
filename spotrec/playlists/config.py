"""Typed configuration of the RL playlist system (user model, simulator, AH-DQN agent, evaluation).

Lives here until the lead wires it into :class:`spotrec.config.Config` as ``playlists: PlaylistRLConfig``.
Every field has a default that runs in seconds on the test fixtures and in minutes on the demo world.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PlaylistRLConfig:
    """Everything the RL playlist step needs (Tomasi et al., KDD 2023: user model + simulator + AH-DQN)."""

    # --- labels and features --------------------------------------------------------------------
    listen_threshold_s: float = 30.0
    """A play counts as "listened" when it lasted more than this many seconds (the "listen > X" head)."""
    completion_fraction: float = 0.9
    """A play counts as "completed" when ``ms_played >= completion_fraction * track_duration_ms``."""
    history_prior_strength: float = 5.0
    """Pseudo-plays that pull a user's history rates (skip rate, completion) toward the global rate, so a
    user with one play does not get a skip rate of exactly 0 or 1."""
    tempo_scale: float = 200.0
    """Tempo (BPM) is divided by this so every track feature lies roughly in [0, 1]."""
    duration_scale_ms: float = 600_000.0
    """Track duration is divided by this (10 minutes) for the same reason."""
    use_als_factors: bool = True
    """Append ALS user / track factors (``gold.user_factors`` / ``gold.track_factors``, when both exist) to
    the user and track blocks, so the user model sees taste affinity, not only audio features."""
    max_position: int = 50
    """Positions are divided by this (and clipped at 1) in the context features."""

    # --- user model -----------------------------------------------------------------------------
    user_model_hidden: list[int] = field(default_factory=lambda: [64, 32])
    """Hidden layer sizes of the shared trunk of the user model (three sigmoid heads sit on top)."""
    user_model_lr: float = 3e-3
    """Adam learning rate of the user model."""
    user_model_weight_decay: float = 1e-5
    """Adam L2 penalty of the user model."""
    user_model_batch_size: int = 256
    """Minibatch size of the user model."""
    user_model_max_epochs: int = 40
    """Upper bound on user model epochs (early stopping usually ends training sooner)."""
    user_model_patience: int = 4
    """Stop after this many epochs without a better validation log-loss; the best epoch is kept."""
    validation_fraction: float = 0.15
    """Share of training sessions held out for early stopping (split by session, not by row)."""
    test_fraction: float = 0.15
    """Share of sessions held out for the reported AUC / log-loss / calibration (split by session)."""
    calibration_bins: int = 10
    """Equal-width bins of predicted probability in the calibration table."""
    max_training_rows: int = 2_000_000
    """Training rows collected to the driver for the user model (a seeded sample beyond this)."""

    # --- simulator ------------------------------------------------------------------------------
    playlist_length: int = 10
    """Tracks per generated playlist / simulated session (the episode ends here at the latest)."""
    pool_size: int = 30
    """Candidate tracks per session; smaller pools are padded and masked in the observation."""
    pool_from_scores: int = 20
    """Of ``pool_size``, how many come from the user's top recommender scores (e.g. ALS) when given;
    the rest are a seeded random draw from the catalogue, so pools differ per user and over time."""
    reward_complete: float = 1.0
    """Reward when the simulated listener completes the track."""
    reward_listen: float = 0.3
    """Reward when the listener plays past the listen threshold but does not complete the track."""
    reward_skip: float = -0.5
    """Reward when the listener skips before the listen threshold."""
    reward_quit: float = -1.0
    """Extra reward added on the step after which the listener quits the session."""
    quit_after_skips: int = 3
    """Consecutive skips after which the simulated listener may quit (when the response model has no quit
    probability of its own) ..."""
    quit_probability: float = 0.5
    """... with this probability per further step (1.0 = always quits at the threshold)."""

    # --- AH-DQN agent ---------------------------------------------------------------------------
    q_hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden sizes of the action-head Q network Q(state, track features) -> scalar (each stream)."""
    q_lr: float = 1e-3
    """Adam learning rate of the Q network."""
    q_user_model_features: bool = True
    """Give the Q network the (frozen) user model's three predictions per candidate as extra inputs."""
    q_reward_prior: bool = True
    """With ``q_user_model_features``: Q = the user model's expected immediate reward + a learned residual
    that starts at zero, so training starts from the greedy-on-user-model policy and learns the long-term
    part (see :class:`spotrec.playlists.agent.QNetwork`)."""
    q_dueling: bool = True
    """Split the residual into a state-value stream V(user, context) and an action stream, so the action
    stream only has to learn how candidates differ (not the session's whole expected future)."""
    q_action_inputs: str = "predictions"
    """What the action stream sees: ``all`` (user, context, track features and the user model's
    predictions) or ``predictions`` (context and the user model's three predictions only; needs
    ``q_user_model_features``). On the demo world ``all`` fitted TD noise per user and track: mean session
    reward against the true listener 5.05 with the prior alone vs 5.96 with ``predictions`` + dueling."""
    gamma: float = 0.9
    """Discount factor."""
    epsilon_start: float = 1.0
    """Exploration rate at the first step."""
    epsilon_end: float = 0.05
    """Exploration rate after the decay."""
    exploration_fraction: float = 0.5
    """Share of all training steps over which epsilon decays linearly from start to end."""
    replay_size: int = 20_000
    """Transitions kept in the replay buffer (oldest overwritten)."""
    batch_size: int = 64
    """Transitions per gradient step."""
    learning_starts: int = 200
    """Environment steps collected before the first gradient step."""
    train_frequency: int = 1
    """Environment steps per gradient step."""
    target_update_interval: int = 250
    """Gradient steps between target network updates."""
    tau: float = 1.0
    """Target update rate: 1.0 copies the online network, < 1 is a Polyak average."""
    double_dqn: bool = True
    """Use double-DQN targets (online network picks a', target network scores it)."""
    episodes: int = 2000
    """Training episodes (simulated sessions)."""
    eval_sessions: int = 300
    """Sessions per policy and world in the evaluation (confidence intervals shrink with more)."""
    log_every: int = 100
    """Episodes between training log lines."""
    training_users: int = 500
    """Users sampled (seeded) to seed simulated sessions for training and evaluation."""
    torch_threads: int = 1
    """Threads torch may use on the driver. The networks are tiny: more threads only add contention
    (with 2 threads on a busy 2-core machine training ran 10x slower than with 1)."""
    seed: int = 1
    """One seed for numpy, torch, the environment and every sample drawn by this step."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlaylistRLConfig:
        """Rebuild from :meth:`to_dict` output (e.g. stored inside a checkpoint)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
