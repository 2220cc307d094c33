"""The one interface every recommender family implements (ALS, baselines, word2vec/RNN, ...).

Frames use string ids (``user_id``, ``track_id``); families that need integer ids (MLlib ALS) read the
``user_idx`` / ``track_idx`` columns that ``gold.interactions`` carries.
"""

from __future__ import annotations

from typing import Protocol

from pyspark.sql import DataFrame


class Recommender(Protocol):
    """Fit on interactions, then produce a ranked top-n per user, never repeating excluded items."""

    name: str

    def fit(self, interactions: DataFrame) -> Recommender:
        """Learn from ``gold.interactions``-shaped rows.

        Columns: user_id, track_id, user_idx, track_idx, confidence (plus plays, skips, ... if present).
        """
        ...

    def recommend(self, users: DataFrame, n: int, exclude: DataFrame | None = None) -> DataFrame:
        """Top ``n`` tracks for each user in ``users`` (column user_id).

        ``exclude`` (user_id, track_id) lists items that must not be recommended to that user (e.g. everything
        heard in training, as Discover Weekly does). Returns user_id, track_id, rank (1-based, int), score (double).
        """
        ...
