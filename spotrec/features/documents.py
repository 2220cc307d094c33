"""Playlists and listening sessions as ordered "sentences" of track ids, and fixed windows for the RNN.

word2vec treats a playlist or a listening session like a sentence: songs that appear near each other get
similar vectors (De Boom et al. 2017). The taste RNN reads a user's ``n`` most recent songs and predicts
song ``n + 1``, so each user's play sequence is cut into fixed windows of ``n`` inputs and one target.

All functions are pure ``DataFrame -> DataFrame`` transforms running on executors; the only I/O helper,
:func:`write_parquet`, writes the batches that the torch trainers stream back with pyarrow.
"""

from __future__ import annotations

import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.columns import (
    COUNT,
    DOC_ID,
    DOC_KIND,
    INPUT_TOKENS,
    INPUTS,
    TARGET,
    TARGET_TOKEN,
    TOKEN,
    TOKENS,
    TRACKS,
    WINDOW_END,
)
from spotrec.features.ordinal import global_row_number


def _ordered_tracks(*order_by: str) -> F.Column:
    """collect_list of track ids sorted by ``order_by`` (array_sort of structs compares field by field)."""
    fields = [F.col(c).alias(f"k{i}") for i, c in enumerate(order_by)]
    collected = F.array_sort(F.collect_list(F.struct(*fields, F.col(C.TRACK_ID).alias("t"))))
    return F.transform(collected, lambda s: s["t"])


def playlist_documents(playlists: DataFrame) -> DataFrame:
    """One document per playlist: its track ids in playlist order.

    Args:
        playlists: silver.playlists rows (playlist_id, position, track_id, ...).

    Returns:
        doc_id (``playlist:<id>``), doc_kind (``playlist``), tracks (array<string>, by position).
    """
    return (
        playlists.groupBy(C.PLAYLIST_ID)
        .agg(_ordered_tracks(C.POSITION).alias(TRACKS))
        .select(
            F.concat(F.lit("playlist:"), F.col(C.PLAYLIST_ID)).alias(DOC_ID),
            F.lit("playlist").alias(DOC_KIND),
            F.col(TRACKS),
        )
    )


def session_documents(events: DataFrame) -> DataFrame:
    """One document per listening session: the tracks played, in time order.

    Events without a ``session_id`` are grouped per user and UTC day, so they still give context.

    Args:
        events: silver.listen_events rows (user_id, track_id, ts, session_id, session_position, event_id).

    Returns:
        doc_id (``session:<user>:<session>``), doc_kind (``session``), tracks (array<string>, by time).
    """
    session = F.coalesce(F.col(C.SESSION_ID), F.concat(F.lit("day:"), F.to_date(C.TS).cast("string")))
    position = F.coalesce(F.col(C.SESSION_POSITION), F.lit(0))
    return (
        events.withColumn("_session", session)
        .withColumn("_position", position)
        .groupBy(C.USER_ID, "_session")
        .agg(_ordered_tracks(C.TS, "_position", C.EVENT_ID).alias(TRACKS))
        .select(
            F.concat_ws(":", F.lit("session"), F.col(C.USER_ID), F.col("_session")).alias(DOC_ID),
            F.lit("session").alias(DOC_KIND),
            F.col(TRACKS),
        )
    )


def play_sequences(events: DataFrame) -> DataFrame:
    """Each user's whole listening history as one time-ordered sequence (the RNN's raw material).

    Returns:
        user_id, tracks (array<string>, by ts then event_id).
    """
    return events.groupBy(C.USER_ID).agg(_ordered_tracks(C.TS, C.EVENT_ID).alias(TRACKS))


def build_vocabulary(documents: DataFrame, top_n: int, min_count: int = 1) -> DataFrame:
    """The ``top_n`` most frequent tracks over all documents, numbered 0.. by descending count.

    Ties are broken by track id so the numbering is deterministic. Token numbers index the rows of the
    song-vector matrix and the items of the Annoy index.

    Returns:
        track_id, token (int, 0-based), count (long).
    """
    counts = (
        documents.select(F.explode(TRACKS).alias(C.TRACK_ID))
        .groupBy(C.TRACK_ID)
        .agg(F.count(F.lit(1)).alias(COUNT))
        .where(F.col(COUNT) >= min_count)
        .orderBy(F.col(COUNT).desc(), F.col(C.TRACK_ID))
        .limit(top_n)
    )
    # Tokens by a range-partitioned sort with per-partition offsets: no single-partition window.
    numbered = global_row_number(counts, [F.col(COUNT).desc(), F.col(C.TRACK_ID)], "_token")
    return numbered.select(C.TRACK_ID, F.col("_token").cast("int").alias(TOKEN), F.col(COUNT).cast("long"))


def encode_documents(documents: DataFrame, vocabulary: DataFrame, keys: list[str], min_length: int = 1) -> DataFrame:
    """Keep only vocabulary tracks in each document (order kept) and add their token numbers.

    Args:
        documents: rows with ``keys`` columns and ``tracks`` (array<string>).
        vocabulary: output of :func:`build_vocabulary`.
        keys: columns identifying a document (e.g. ``[doc_id, doc_kind]`` or ``[user_id]``).
        min_length: documents with fewer remaining tracks are dropped.

    Returns:
        ``keys``, tracks (array<string>), tokens (array<int>), in the original order.
    """
    exploded = documents.select(*keys, F.posexplode(TRACKS).alias("_pos", C.TRACK_ID))
    joined = exploded.join(vocabulary.select(C.TRACK_ID, TOKEN), on=C.TRACK_ID, how="inner")
    pairs = F.array_sort(F.collect_list(F.struct(F.col("_pos"), F.col(C.TRACK_ID), F.col(TOKEN))))
    return (
        joined.groupBy(*keys)
        .agg(pairs.alias("_pairs"))
        .select(
            *keys,
            F.transform("_pairs", lambda s: s[C.TRACK_ID]).alias(TRACKS),
            F.transform("_pairs", lambda s: s[TOKEN]).alias(TOKENS),
        )
        .where(F.size(TRACKS) >= min_length)
    )


PAD_TOKEN = -1
"""Token of an empty input slot (left padding of windows shorter than ``n``); its song vector is zero."""


def rnn_windows(
    sequences: DataFrame, n: int, stride: int = 1, min_inputs: int | None = None, new_targets: bool = False
) -> DataFrame:
    """Cut each user's encoded sequence into windows of ``n`` inputs and the following target.

    The target at 0-based position ``i`` takes the ``n`` songs before it as inputs. Targets run over
    ``i = min_inputs, min_inputs + stride, ...`` up to ``L - 1``. With ``min_inputs < n`` the first windows
    have fewer than ``n`` real songs and are left-padded (track null, token :data:`PAD_TOKEN`), which lets
    short sequences such as radio playlists train the RNN too; by default every window is full.

    With ``new_targets`` only windows whose target is the song's first occurrence in the sequence are kept: the
    model then learns what a listener discovers next rather than which favourite they replay, which is what a
    recommender of unheard songs is judged on (and it halves the windows of a replay-heavy history).

    Args:
        sequences: user_id, tracks, tokens (from :func:`encode_documents` over :func:`play_sequences`).
        n: inputs per window (the paper's ``n``).
        stride: step between consecutive targets.
        min_inputs: fewest real songs in a window (1..n; default n).
        new_targets: keep only targets not played earlier in the sequence.

    Returns:
        user_id, window_end (int), inputs (array<string>), target (string), input_tokens (array<int>),
        target_token (int).
    """
    first = n if min_inputs is None else min_inputs
    if n < 1 or stride < 1 or not 1 <= first <= n:
        raise ValueError(f"need n >= 1, stride >= 1, 1 <= min_inputs <= n; got {n}, {stride}, {min_inputs}")
    start, length = f"greatest(i - {n}, 0) + 1", f"least(i, {n})"
    pad = f"greatest({n} - i, 0)"
    positions = f"sequence({first}, size({TRACKS}) - 1, {stride})"
    if new_targets:  # array_position finds the first occurrence (1-based): position i + 1 means "new here"
        positions = f"filter({positions}, i -> array_position({TRACKS}, element_at({TRACKS}, i + 1)) = i + 1)"
    window = F.expr(
        f"transform({positions}, i -> named_struct("
        f"'{WINDOW_END}', i, "
        f"'{INPUTS}', concat(array_repeat(cast(null as string), {pad}), slice({TRACKS}, {start}, {length})), "
        f"'{TARGET}', element_at({TRACKS}, i + 1), "
        f"'{INPUT_TOKENS}', concat(array_repeat({PAD_TOKEN}, {pad}), slice({TOKENS}, {start}, {length})), "
        f"'{TARGET_TOKEN}', element_at({TOKENS}, i + 1)))"
    )
    return (
        sequences.where(F.size(TRACKS) > first)
        .select(C.USER_ID, F.explode(window).alias("w"))
        .select(
            C.USER_ID,
            F.col(f"w.{WINDOW_END}").cast("int").alias(WINDOW_END),
            F.col(f"w.{INPUTS}").alias(INPUTS),
            F.col(f"w.{TARGET}").alias(TARGET),
            F.col(f"w.{INPUT_TOKENS}").cast("array<int>").alias(INPUT_TOKENS),
            F.col(f"w.{TARGET_TOKEN}").cast("int").alias(TARGET_TOKEN),
        )
    )


def last_n(sequences: DataFrame, n: int) -> DataFrame:
    """Each user's ``n`` most recent encoded tracks (all of them when fewer): the RNN's input at serving.

    Returns:
        user_id, tracks (array<string>), tokens (array<int>); users with an empty sequence are dropped.
    """
    start = F.greatest(F.size(TRACKS) - n + 1, F.lit(1))
    return sequences.where(F.size(TRACKS) > 0).select(
        C.USER_ID,
        F.slice(TRACKS, start, F.least(F.size(TRACKS), F.lit(n))).alias(TRACKS),
        F.slice(TOKENS, start, F.least(F.size(TOKENS), F.lit(n))).alias(TOKENS),
    )


def recent_tracks(events: DataFrame, days: int, as_of: datetime.datetime | None = None) -> DataFrame:
    """Distinct tracks each user played in the ``days`` days up to ``as_of`` (default: latest event).

    These are excluded from the user's recommendations: the taste vector points at what they are
    listening to now, and recommending it back is no discovery.

    Returns:
        user_id, track_id (distinct pairs); empty when ``days`` is 0.
    """
    if days <= 0:
        return events.select(C.USER_ID, C.TRACK_ID).limit(0)
    if as_of is None:
        # One-row frame, broadcast to every partition: no global sort or single-partition window.
        latest = events.agg(F.max(C.TS).alias("_as_of"))
    else:
        latest = events.sparkSession.createDataFrame([(as_of,)], "_as_of timestamp")
    start = F.col("_as_of") - F.make_interval(days=F.lit(int(days)))
    return (
        events.select(C.USER_ID, C.TRACK_ID, C.TS)
        .crossJoin(F.broadcast(latest))
        .where((F.col(C.TS) > start) & (F.col(C.TS) <= F.col("_as_of")))
        .select(C.USER_ID, C.TRACK_ID)
        .distinct()
    )


def validation_split(windows: DataFrame, fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """Split windows by a hash of the user id: a user's windows all land on one side (no leakage).

    Returns:
        (train, validation) frames.
    """
    bucket = F.abs(F.xxhash64(F.col(C.USER_ID), F.lit(seed))) % 10_000
    flagged = windows.withColumn("_val", bucket < round(fraction * 10_000))
    return flagged.where(~F.col("_val")).drop("_val"), flagged.where(F.col("_val")).drop("_val")


def write_parquet(df: DataFrame, path: str, files: int = 4) -> None:
    """Write ``df`` as ``files`` Parquet files (overwrite) for the torch trainers to stream with pyarrow.

    The rows are shuffled into ``files`` partitions by a hash so each file mixes many users.
    """
    df.repartition(max(1, files)).write.mode("overwrite").parquet(path)
