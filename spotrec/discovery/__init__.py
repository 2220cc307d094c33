"""Spotify's second recommender (De Boom et al. 2017): word2vec song vectors, a taste RNN, Annoy retrieval.

Modules: ``word2vec`` (Spark MLlib skip-gram + hierarchical softmax), ``cbow`` (torch CBOW + negative
sampling, as the paper), ``rnn`` (GRU/LSTM taste model and its training driver), ``ann`` (Annoy index,
executor-side taste vectors and queries), ``evaluate`` (next-track metrics, baselines, Yes.com playlists),
``job`` (the end-to-end step over silver tables), ``config`` and ``tables``.
"""
