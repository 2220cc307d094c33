"""Train / test splits for offline evaluation of Discover Weekly-style recommenders.

Discover Weekly is judged on the future: the model sees listening up to a cut-off and must predict which *new*
tracks the user goes on to play. :func:`time_split` cuts on whole UTC days; :func:`holdout_split` is the
fallback for data without timestamps (HetRec's pre-aggregated counts), holding out a random share of each
user's items. :func:`relevant_items` then keeps only the test items the user had not heard in training,
because those are the only hits a recommender of unheard tracks can score; :func:`first_new_tracks` keeps
each user's first such track, the target of the next-track metrics.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.errors import SchemaMismatchError


def require_columns(df: DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    """Raise :class:`SchemaMismatchError` naming every column of ``columns`` that ``df`` lacks.

    Args:
        df: The frame to check.
        columns: Columns the caller needs.
        what: How the caller names this input in the message (e.g. ``"recs"``).
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaMismatchError(f"{what} is missing column(s) {missing}; it has {df.columns}")


def time_split_cutoff(events: DataFrame, *, test_days: int = 7) -> dt.datetime:
    """The first instant of the test period: midnight ``test_days`` days before the day after the last event.

    Days are in the session timezone (UTC in spotrec). Only this one scalar is brought to the driver.

    Raises:
        ValueError: ``test_days`` < 1 or ``events`` is empty.
    """
    if test_days < 1:
        raise ValueError(f"test_days must be >= 1, got {test_days}")
    require_columns(events, [C.TS], "events")
    # Epoch seconds, not a datetime, cross to the driver: no dependence on the Python process's timezone.
    row = events.select(
        F.unix_seconds(F.date_add(F.to_date(F.max(C.TS)), 1 - test_days).cast("timestamp")).alias("cutoff")
    ).first()
    if row is None or row["cutoff"] is None:
        raise ValueError("cannot split an empty events frame: no timestamps to cut on")
    return dt.datetime.fromtimestamp(int(row["cutoff"]), tz=dt.UTC)


def time_split(events: DataFrame, *, test_days: int = 7) -> tuple[DataFrame, DataFrame]:
    """Split listen events on time: the last ``test_days`` whole (UTC) days are test, the rest train.

    The cut-off is ``date_trunc('day', max(ts)) + 1 day - test_days days``; an event exactly at the cut-off is
    test. The result depends only on the data, so it is deterministic.

    Args:
        events: ``silver.listen_events``-shaped rows (needs ``ts``).
        test_days: Number of whole days at the end of the data to hold out.

    Returns:
        ``(train, test)`` with the columns of ``events``.
    """
    cutoff = F.timestamp_seconds(F.lit(int(time_split_cutoff(events, test_days=test_days).timestamp())))
    return events.where(F.col(C.TS) < cutoff), events.where(F.col(C.TS) >= cutoff)


def holdout_split(interactions: DataFrame, *, fraction: float = 0.2, seed: int = 42) -> tuple[DataFrame, DataFrame]:
    """Per user, hold out a pseudo-random ``fraction`` of their items as test (for data without timestamps).

    Each user's items are ordered by ``xxhash64(seed, user_id, track_id)`` (ties by ``track_id``) and the
    first ``min(round_half_up(n * fraction), n - 1)`` go to test, so a user always keeps at least one training
    item and a user with one item is all train. Hash order, not ``rand()``, makes the split independent of
    partitioning: the same seed gives the same split on any cluster.

    Args:
        interactions: Rows with ``user_id`` and ``track_id``, one per pair (e.g. ``gold.interactions``).
        fraction: Share of each user's items to hold out, in (0, 1).
        seed: Selects the pseudo-random order.

    Returns:
        ``(train, test)`` with the columns of ``interactions``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    require_columns(interactions, [C.USER_ID, C.TRACK_ID], "interactions")
    by_user = Window.partitionBy(C.USER_ID)
    order = Window.partitionBy(C.USER_ID).orderBy(F.col("_h"), F.col(C.TRACK_ID))
    ranked = (
        interactions.withColumn("_h", F.xxhash64(F.lit(seed), F.col(C.USER_ID), F.col(C.TRACK_ID)))
        .withColumn("_n", F.count(F.lit(1)).over(by_user))
        .withColumn("_pos", F.row_number().over(order))
        .withColumn("_n_test", F.least(F.floor(F.col("_n") * fraction + 0.5), F.col("_n") - 1))
    )
    cols = interactions.columns
    train = ranked.where(F.col("_pos") > F.col("_n_test")).select(*cols)
    test = ranked.where(F.col("_pos") <= F.col("_n_test")).select(*cols)
    return train, test


def chosen_plays(test: DataFrame) -> DataFrame:
    """The test plays the listener chose: all but the exploration log's (``context_type`` ``exploration``,
    candidates an experiment served in random order). A Discover Weekly hit is a new track the user went on
    to play; a track a shuffled experiment put in front of them says nothing about that, so those plays stay
    in training (they are listening history) but are not test targets. Frames without ``context_type``
    pass unchanged."""
    if C.CONTEXT_TYPE not in test.columns:
        return test
    return test.where(F.col(C.CONTEXT_TYPE).isNull() | (F.col(C.CONTEXT_TYPE) != C.EXPLORATION_CONTEXT))


def relevant_items(train: DataFrame, test: DataFrame) -> DataFrame:
    """The test (user, track) pairs that count as hits: tracks the user did not play in train.

    Users absent from train are dropped (no model can personalise for them, and Discover Weekly only serves
    users with history).

    Args:
        train: Training rows (events or interactions) with ``user_id`` and ``track_id``.
        test: Test rows with ``user_id`` and ``track_id``.

    Returns:
        Distinct ``user_id, track_id``.
    """
    require_columns(train, [C.USER_ID, C.TRACK_ID], "train")
    require_columns(test, [C.USER_ID, C.TRACK_ID], "test")
    heard = train.select(C.USER_ID, C.TRACK_ID).distinct()
    train_users = train.select(C.USER_ID).distinct()
    return (
        test.select(C.USER_ID, C.TRACK_ID)
        .distinct()
        .join(heard, [C.USER_ID, C.TRACK_ID], "left_anti")
        .join(train_users, [C.USER_ID], "left_semi")
    )


def first_new_tracks(train: DataFrame, test: DataFrame) -> DataFrame:
    """Each training user's first test play of a track they had not played in training (ties by event_id).

    The target of :func:`spotrec.evaluation.metrics.next_track_metrics`: one of the user's
    :func:`relevant_items`, the one they played first.

    Args:
        train: Training events with ``user_id`` and ``track_id``.
        test: Test events with ``user_id``, ``track_id``, ``ts`` and ``event_id``.

    Returns:
        ``user_id, track_id``: one row per user with at least one new track in the test period.
    """
    require_columns(train, [C.USER_ID, C.TRACK_ID], "train")
    require_columns(test, [C.USER_ID, C.TRACK_ID, C.TS, C.EVENT_ID], "test")
    heard = train.select(C.USER_ID, C.TRACK_ID).distinct()
    first = Window.partitionBy(C.USER_ID).orderBy(C.TS, C.EVENT_ID)
    return (
        test.select(C.USER_ID, C.TRACK_ID, C.TS, C.EVENT_ID)
        .join(heard, [C.USER_ID, C.TRACK_ID], "left_anti")
        .join(train.select(C.USER_ID).distinct(), [C.USER_ID], "left_semi")
        .withColumn("_n", F.row_number().over(first))
        .where(F.col("_n") == 1)
        .select(C.USER_ID, C.TRACK_ID)
    )
