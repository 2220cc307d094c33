"""Spotify's second recommender (De Boom et al. 2017): word2vec song vectors, a taste RNN, Annoy retrieval.
Pure model code; the ``rnn`` step (:mod:`spotrec.steps.rnn`) reads and writes the tables.

Modules: ``word2vec`` (Spark MLlib skip-gram + hierarchical softmax), ``cbow`` (torch CBOW + negative
sampling, as the paper), ``taste_rnn`` (GRU/LSTM taste model and its training driver), ``ann`` (Annoy
index, executor-side taste vectors and queries), ``model`` (fit song vectors + RNN from event frames),
``week_eval`` (the last-week comparison beside ALS), ``evaluate`` (next-track metrics, Yes.com playlists).
"""
