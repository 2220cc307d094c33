"""Offline evaluation of the recommenders: train/test splits, ranking and beyond-accuracy metrics, harness.

- :mod:`spotrec.evaluation.split`: time-based and per-user hold-out splits; the relevant (unheard) test items.
- :mod:`spotrec.evaluation.metrics`: precision / recall / MAP / NDCG / hit rate at k, catalogue coverage,
  novelty, popularity bias, artist diversity, all computed in Spark; rows for ``ops.model_metrics``.
- :mod:`spotrec.evaluation.harness`: fit several recommenders on one split, score them alike, print a table.
"""
