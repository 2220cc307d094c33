"""Offline evaluation of every recommender: one interface, one split, one set of metrics, one harness.

- :mod:`spotrec.evaluation.recommender`: the ``Recommender`` interface (``recommend``) every model implements,
  and ``InteractionRecommender`` (adds ``fit(interactions)``) for the models the harness fits itself.
- :mod:`spotrec.evaluation.baselines`: popularity and item co-occurrence, the baselines of every system.
- :mod:`spotrec.evaluation.split`: time-based and per-user hold-out splits; the relevant (unheard) test items
  and each user's first new track (the next-track target).
- :mod:`spotrec.evaluation.metrics`: precision / recall / MAP / NDCG / hit rate at k, hit rate and MRR (one
  definition, used for the next-track metrics too), catalogue coverage, novelty, popularity bias, artist
  diversity, all computed in Spark; rows for ``ops.model_metrics``.
- :mod:`spotrec.evaluation.harness`: score several recommenders alike on one split, and the Markdown tables.
"""
