"""Spotify's second recommender (De Boom et al. 2017): word2vec song vectors, a taste RNN, Annoy retrieval.
Pure model code; the ``rnn`` step (:mod:`spotrec.steps.rnn`) reads and writes the tables.

Modules:

- ``word2vec``: Spark MLlib skip-gram + hierarchical softmax; ``cbow``: torch CBOW + negative sampling (the
  paper's variant);
- ``taste_rnn``: the GRU/LSTM taste model, its losses, checkpoints and inference; ``training``: its training
  driver, plain or through TorchDistributor;
- ``ann``: the Annoy index, executor-side taste vectors and queries;
- ``model``: fit song vectors + RNN from event frames;
- ``recommender``: the RNN and its word2vec baselines as :class:`~spotrec.evaluation.recommender.Recommender`;
- ``week_eval``: the last-week comparison beside ALS, through the evaluation harness;
- ``evaluate``: numpy next-track ranking for playlist prefixes (``benchmarks/yes_eval.py``).
"""
