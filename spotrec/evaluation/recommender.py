"""The one interface every recommender implements (ALS, the baselines, the word2vec / RNN methods, ...).

- :class:`Recommender`: a *fitted* model that ranks tracks for users. This is all the harness
  (:func:`spotrec.evaluation.harness.evaluate`) and the contract tests need.
- :class:`InteractionRecommender`: a recommender that learns from ``gold.interactions``-shaped rows through
  :meth:`~InteractionRecommender.fit`; the harness fits it on the training split. Models that learn from
  something else (the taste RNN learns from ordered listening events) are constructed already fitted on
  the training split and passed to the harness as plain :class:`Recommender` s.

Frames use string ids (``user_id``, ``track_id``); families that need integer ids (MLlib ALS) read the
``user_idx`` / ``track_idx`` columns that ``gold.interactions`` carries.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pyspark.sql import DataFrame


@runtime_checkable
class Recommender(Protocol):
    """A fitted model: a ranked top-n of tracks per user, never an excluded (user, track)."""

    name: str
    """Label in metric tables (``ops.model_metrics.model``) and reports."""

    def recommend(self, users: DataFrame, n: int, exclude: DataFrame | None = None) -> DataFrame:
        """Top ``n`` tracks for each user in ``users`` (column user_id).

        Args:
            users: ``user_id`` (duplicates and other columns ignored).
            n: Most recommendations per user (a user may get fewer, or none: e.g. unknown to the model).
            exclude: ``user_id, track_id`` pairs that must not be recommended to that user (e.g. everything
                heard in training, as Discover Weekly does), or None.

        Returns:
            ``user_id, track_id, rank, score``: ``rank`` 1..(list length) per user (int), ``score`` (double)
            non-increasing with rank.
        """
        ...


@runtime_checkable
class InteractionRecommender(Recommender, Protocol):
    """A recommender fitted on interactions (popularity, co-occurrence, ALS): the harness calls :meth:`fit`."""

    def fit(self, interactions: DataFrame) -> InteractionRecommender:
        """Learn from ``gold.interactions``-shaped rows and return ``self``.

        Columns: user_id, track_id, user_idx, track_idx, confidence (plus plays, skips, ... if present); a
        model documents which it uses (the baselines need only user_id and track_id).
        """
        ...
