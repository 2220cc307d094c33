"""RL playlist generation (Tomasi et al., KDD 2023): a learned user model, a simulator built on it and an
Action-Head DQN that fills listening sessions from per-user candidate pools. Pure model code; the ``rl``
step (:mod:`spotrec.steps.rl`) reads and writes the tables.

Modules: ``features`` (Spark training rows), ``user_model`` (torch world model + metrics), ``env``
(``gymnasium`` simulator and response models), ``q_network`` (the AH-DQN Q network), ``dqn`` (replay buffer,
epsilon schedule, TD targets), ``agent`` (AH-DQN training and checkpoints), ``policies`` (baselines, playlist
planning), ``evaluate`` (simulation metrics with confidence intervals), ``pools`` (candidate pools on
executors, session specs, playlist generation).
"""
