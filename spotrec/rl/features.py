"""Training rows for the user model: one row per (user, session, position) with context, track and labels.

The user model of the RL playlist system (Tomasi et al., KDD 2023) predicts how a listener responds to a
track at a given point of a session. Its inputs come in three blocks, each a list of flat, named columns
(so data engineers can read them) that :func:`pack_features` packs into float arrays for torch:

* user context (``u_*``): the listener's history *before* the session (no leakage): skip rate and mean
  completion (both smoothed toward the global rate), how much they have listened, and an audio "taste"
  (mean audio features of the tracks they completed), optionally a taste / factor vector (ALS, RNN);
* track features (``t_*``): audio-like features, duration, popularity, optionally an embedding;
* session context (``c_*``): the position in the session and the run of skipped tracks just before
  (listeners who skip several tracks in a row are "browsing", skip more and may quit).

Labels: ``label_completed`` (played to ``completion_fraction`` of its length), ``label_skipped`` (the
event's skip flag; where a source has none, "not listened past ``listen_threshold_s``", Spotify's 30 s
stream rule), ``label_listened`` (played more than ``listen_threshold_s`` seconds); ``label_ended`` (the
learned termination head's label: the session's last play, or, from the exploration log, a last play before
the last served track, and no label on organic sessions).

Everything here is a pure ``DataFrame -> DataFrame`` transform; reading and writing tables is in
:mod:`spotrec.steps.rl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from spotrec import columns as C
from spotrec.config import RlConfig
from spotrec.errors import SchemaMismatchError

# Column names of the feature frames (intermediate: no table stores them).
SESSION_START = "session_start"
USER_FEATURES = "user_features"
TRACK_FEATURES = "track_features"
CONTEXT_FEATURES = "context_features"
LABEL_COMPLETED = C.LABEL_COMPLETED
LABEL_SKIPPED = C.LABEL_SKIPPED
LABEL_LISTENED = C.LABEL_LISTENED
LABELS = (LABEL_COMPLETED, LABEL_SKIPPED, LABEL_LISTENED)
LABEL_ENDED = C.LABEL_ENDED
"""1 on a session's last play (the learned termination head's label; not one of the three response heads)."""
SPLIT = "split"
VECTOR = "vector"
"""Column of the optional ``(user_id | track_id, vector)`` frames (e.g. ALS factors, RNN taste vectors)."""

AUDIO_FEATURES = C.AUDIO_FEATURES
"""silver.tracks audio-like columns; tempo is scaled by ``tempo_scale``, the others are already in [0, 1]."""
SKIP_RUN_CAP = 10
"""Runs of consecutive skipped tracks are capped (and scaled by) this in ``c_consecutive_skips``."""
PLAYS_SCALE = 10.0
"""``u_plays = log1p(plays before the session) / PLAYS_SCALE`` (about 1 at 22,000 plays)."""
NEUTRAL = 0.5
"""Value of an audio feature that no track in the catalogue has (e.g. Last.fm data has none)."""

USER_COLUMNS = (
    "u_skip_rate",
    "u_completion",
    "u_plays",
    *(f"u_taste_{f}" for f in AUDIO_FEATURES),
)
TRACK_COLUMNS = (*(f"t_{f}" for f in AUDIO_FEATURES), "t_duration", "t_popularity")
CONTEXT_COLUMNS = ("c_position", "c_consecutive_skips")


@dataclass(frozen=True)
class FeatureLayout:
    """Names and sizes of the three input blocks; stored in every checkpoint so inference packs alike."""

    user: tuple[str, ...] = USER_COLUMNS
    track: tuple[str, ...] = TRACK_COLUMNS
    context: tuple[str, ...] = CONTEXT_COLUMNS
    user_vector_dim: int = 0
    """Length of the optional user vector appended to the user block (0: none)."""
    track_vector_dim: int = 0
    """Length of the optional track embedding appended to the track block (0: none)."""

    @property
    def user_dim(self) -> int:
        return len(self.user) + self.user_vector_dim

    @property
    def track_dim(self) -> int:
        return len(self.track) + self.track_vector_dim

    @property
    def context_dim(self) -> int:
        return len(self.context)

    def to_dict(self) -> dict[str, object]:
        return {
            "user": list(self.user),
            "track": list(self.track),
            "context": list(self.context),
            "user_vector_dim": self.user_vector_dim,
            "track_vector_dim": self.track_vector_dim,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FeatureLayout:
        return cls(
            user=tuple(data["user"]),  # type: ignore[arg-type]
            track=tuple(data["track"]),  # type: ignore[arg-type]
            context=tuple(data["context"]),  # type: ignore[arg-type]
            user_vector_dim=int(data["user_vector_dim"]),  # type: ignore[call-overload]
            track_vector_dim=int(data["track_vector_dim"]),  # type: ignore[call-overload]
        )


def _require(df: DataFrame, cols: tuple[str, ...], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SchemaMismatchError(f"{what} needs column(s) {missing}; got {df.columns}")


# --- events -> labelled plays ---------------------------------------------------------------------


def labelled_plays(events: DataFrame, tracks: DataFrame, cfg: RlConfig) -> DataFrame:
    """One row per play with its session, position in the session, labels and completion fraction.

    Sessions come from ``session_id`` / ``session_position`` when the source has them; otherwise a
    session is the user's listening on one UTC day, ordered by time. The track length comes from the event,
    else from the catalogue; a play of unknown length counts as completed when it was not skipped.

    Returns:
        user_id, session_id, position (1-based), ts, track_id, completion (0..1 or null),
        label_completed, label_skipped, label_listened (ints 0/1).
    """
    _require(
        events,
        (C.USER_ID, C.TRACK_ID, C.TS, C.MS_PLAYED, C.TRACK_DURATION_MS, C.SKIPPED, C.SESSION_ID, C.SESSION_POSITION),
        "labelled_plays",
    )
    _require(tracks, (C.TRACK_ID, C.DURATION_MS), "labelled_plays (tracks)")
    durations = tracks.select(C.TRACK_ID, F.col(C.DURATION_MS).alias("_catalogue_ms"))
    ev = events.join(durations, C.TRACK_ID, "left")
    session = F.coalesce(
        F.col(C.SESSION_ID), F.concat_ws(":", F.col(C.USER_ID), F.date_format(F.col(C.TS), "yyyy-MM-dd"))
    )
    ev = ev.withColumn(C.SESSION_ID, session)
    in_session = Window.partitionBy(C.USER_ID, C.SESSION_ID).orderBy(
        F.col(C.SESSION_POSITION).asc_nulls_last(), C.TS, C.TRACK_ID
    )
    duration = F.coalesce(F.col(C.TRACK_DURATION_MS), F.col("_catalogue_ms")).cast("double")
    ms = F.col(C.MS_PLAYED).cast("double")
    completion = F.when(duration > 0, F.least(ms / duration, F.lit(1.0)))
    listened = ms > cfg.listen_threshold_s * 1000.0
    skipped = F.coalesce(F.col(C.SKIPPED), ~listened)
    completed = F.coalesce(completion >= cfg.completion_fraction, ~skipped)
    return ev.select(
        C.USER_ID,
        C.SESSION_ID,
        F.row_number().over(in_session).cast("int").alias(C.POSITION),
        C.TS,
        C.TRACK_ID,
        completion.alias(C.COMPLETION),
        completed.cast("int").alias(LABEL_COMPLETED),
        skipped.cast("int").alias(LABEL_SKIPPED),
        listened.cast("int").alias(LABEL_LISTENED),
    )


def exploration_log(events: DataFrame, tracks: DataFrame, cfg: RlConfig) -> DataFrame:
    """The plays of the exploration log's sessions (``context_type`` :data:`~spotrec.columns.EXPLORATION_CONTEXT`:
    a candidate pool served in random order), labelled as the user model sees them, with ``label_ended``
    on each session's last play.

    In these sessions the order of the tracks does not depend on the listener's own choices, so the
    responses to a track after another (coherence, fatigue, the end of a session) are identifiable there;
    organic sessions mix them with why the listener picked that order.

    Returns:
        user_id, session_id, position, ts, track_id, completion, label_completed, label_skipped,
        label_listened, label_ended.
    """
    explore = events.where(F.col(C.CONTEXT_TYPE) == C.EXPLORATION_CONTEXT)
    plays = labelled_plays(explore, tracks, cfg).join(_served_lengths(explore), [C.USER_ID, C.SESSION_ID], "left")
    last_position = F.max(C.POSITION).over(Window.partitionBy(C.USER_ID, C.SESSION_ID))
    return plays.withColumn(LABEL_ENDED, _ended_label(last_position)).drop(SERVED)


SERVED = "_served"


def _served_lengths(explore: DataFrame) -> DataFrame:
    """Per exploration session: how many tracks were served (``context_id`` ``exploration:<n>``; null when
    the log does not say)."""
    n = F.regexp_extract(F.col(C.CONTEXT_ID), rf"^{C.EXPLORATION_CONTEXT}:(\d+)$", 1)
    return (
        explore.where(F.col(C.SESSION_ID).isNotNull())
        .groupBy(C.USER_ID, C.SESSION_ID)
        .agg(F.max(F.when(n != "", n.cast("int"))).alias(SERVED))
    )


def _ended_label(last_position: Column) -> Column:
    """1 on the session's last play, unless that play was the last track served (censored: the list ran
    out, the listener did not leave); with an unknown served length every last play counts."""
    last = F.col(C.POSITION) == last_position
    censored = F.col(SERVED).isNotNull() & (last_position >= F.col(SERVED))
    return (last & ~censored).cast("int")


# --- track features -------------------------------------------------------------------------------


def track_feature_columns(
    tracks: DataFrame,
    plays: DataFrame,
    cfg: RlConfig,
    track_vectors: DataFrame | None = None,
    track_vector_dim: int = 0,
) -> DataFrame:
    """Per catalogue track: the ``t_*`` columns (and ``t_vector`` when vectors are given).

    Missing audio features take the catalogue mean (or :data:`NEUTRAL` when no track has them), so real
    sources without audio features still train. Popularity is ``log1p(plays) / log1p(max plays)`` over
    ``plays`` (any frame with a track_id per play), 0 for tracks never played.
    """
    _require(tracks, (C.TRACK_ID, C.DURATION_MS, *AUDIO_FEATURES), "track_feature_columns")
    counts = plays.groupBy(C.TRACK_ID).agg(F.count(F.lit(1)).alias("_plays"))
    stats = tracks.agg(
        *[F.avg(f).alias(f"_mean_{f}") for f in AUDIO_FEATURES],
        F.avg(C.DURATION_MS).alias("_mean_duration"),
    ).crossJoin(counts.agg(F.max("_plays").alias("_max_plays")))
    df = tracks.join(counts, C.TRACK_ID, "left").crossJoin(stats)
    scale = {f: 1.0 for f in AUDIO_FEATURES} | {C.TEMPO: cfg.tempo_scale}
    cols: list[Column] = [F.col(C.TRACK_ID)]
    for f in AUDIO_FEATURES:
        value = F.coalesce(F.col(f), F.col(f"_mean_{f}"), F.lit(NEUTRAL * scale[f])) / scale[f]
        cols.append(value.cast("double").alias(f"t_{f}"))
    duration = F.coalesce(F.col(C.DURATION_MS), F.col("_mean_duration"), F.lit(210_000.0))
    cols.append((duration / cfg.duration_scale_ms).cast("double").alias("t_duration"))
    popularity = F.when(
        F.col("_max_plays") > 1, F.log1p(F.coalesce(F.col("_plays"), F.lit(0))) / F.log1p(F.col("_max_plays"))
    ).otherwise(F.when(F.col("_plays") > 0, 1.0).otherwise(0.0))
    cols.append(popularity.cast("double").alias("t_popularity"))
    out = df.select(*cols)
    if track_vectors is not None:
        vec = track_vectors.select(C.TRACK_ID, F.col(VECTOR).alias("t_vector"))
        out = out.join(vec, C.TRACK_ID, "left").withColumn(
            "t_vector", F.coalesce("t_vector", F.array_repeat(F.lit(0.0).cast("float"), track_vector_dim))
        )
    return out


# --- user context ---------------------------------------------------------------------------------


def _session_sums(plays: DataFrame, track_cols: DataFrame) -> DataFrame:
    """Per (user, session): start time and the sums the history features are built from."""
    taste = {f: F.when(F.col(LABEL_COMPLETED) == 1, F.col(f"t_{f}")) for f in AUDIO_FEATURES}
    joined = plays.join(track_cols.select(C.TRACK_ID, *[f"t_{f}" for f in AUDIO_FEATURES]), C.TRACK_ID, "left")
    return joined.groupBy(C.USER_ID, C.SESSION_ID).agg(
        F.min(C.TS).alias(SESSION_START),
        F.count(F.lit(1)).cast("double").alias("_n"),
        F.sum(LABEL_SKIPPED).cast("double").alias("_skips"),
        F.sum(F.coalesce(F.col("completion"), F.col(LABEL_COMPLETED).cast("double"))).alias("_completion"),
        F.count(taste[C.ENERGY]).cast("double").alias("_n_completed"),
        *[F.sum(taste[f]).alias(f"_taste_{f}") for f in AUDIO_FEATURES],
    )


def _global_rates(plays: DataFrame, track_cols: DataFrame) -> DataFrame:
    """One row: the priors the history features shrink toward (global rates, catalogue mean taste)."""
    rates = plays.agg(
        F.avg(LABEL_SKIPPED).alias("_g_skip"),
        F.avg(F.coalesce(F.col("completion"), F.col(LABEL_COMPLETED).cast("double"))).alias("_g_completion"),
    )
    taste = track_cols.agg(*[F.avg(f"t_{f}").alias(f"_g_{f}") for f in AUDIO_FEATURES])
    return rates.crossJoin(taste)


def _smoothed(prefix: str, m: float) -> list[Column]:
    """The ``u_*`` columns from history sums named ``{prefix}_n``, ``{prefix}_skips``, ... and priors."""

    def s(name: str) -> Column:
        return F.coalesce(F.col(f"{prefix}{name}"), F.lit(0.0))

    cols = [
        ((s("_skips") + m * F.col("_g_skip")) / (s("_n") + m)).alias("u_skip_rate"),
        ((s("_completion") + m * F.col("_g_completion")) / (s("_n") + m)).alias("u_completion"),
        (F.log1p(s("_n")) / PLAYS_SCALE).alias("u_plays"),
    ]
    for f in AUDIO_FEATURES:
        cols.append(((s(f"_taste_{f}") + m * F.col(f"_g_{f}")) / (s("_n_completed") + m)).alias(f"u_taste_{f}"))
    return cols


_SUM_COLUMNS = ("_n", "_skips", "_completion", "_n_completed", *(f"_taste_{f}" for f in AUDIO_FEATURES))


def _with_user_vectors(df: DataFrame, user_vectors: DataFrame | None, dim: int) -> DataFrame:
    if user_vectors is None:
        return df
    vec = user_vectors.select(C.USER_ID, F.col(VECTOR).alias("u_vector"))
    return df.join(vec, C.USER_ID, "left").withColumn(
        "u_vector", F.coalesce("u_vector", F.array_repeat(F.lit(0.0).cast("float"), dim))
    )


def training_rows(
    events: DataFrame,
    tracks: DataFrame,
    cfg: RlConfig,
    *,
    user_vectors: DataFrame | None = None,
    user_vector_dim: int = 0,
    track_vectors: DataFrame | None = None,
    track_vector_dim: int = 0,
    ended_from: Literal["all", "exploration"] = "all",
) -> DataFrame:
    """Per (user, session, position): history-only user context, track features, session context, labels.

    The user context of a session summarises only the user's *earlier* sessions (ordered by start time),
    so the model never sees the answer in its inputs; a user's first session gets the priors.

    Args:
        events: rows shaped like ``silver.listen_events``.
        tracks: rows shaped like ``silver.tracks``.
        cfg: thresholds, scales and the smoothing strength.
        user_vectors: optional ``(user_id, vector)`` (e.g. ALS user factors); missing users get zeros.
        user_vector_dim: length of those vectors.
        track_vectors: optional ``(track_id, vector)`` track embeddings; missing tracks get zeros.
        track_vector_dim: length of those vectors.
        ended_from: ``all``: ``label_ended`` is 1 on every session's last play; ``exploration``: only the
            exploration log's sessions get the label (1 on a last play before the last served track,
            0 elsewhere), the organic ones null (the termination head skips them).

    Returns:
        user_id, session_id, session_start, position, track_id, the ``u_*``, ``t_*``, ``c_*`` columns of
        :class:`FeatureLayout` (plus ``u_vector`` / ``t_vector`` when given), the three labels and
        ``label_ended``.
    """
    plays = labelled_plays(events, tracks, cfg)
    track_cols = track_feature_columns(tracks, plays, cfg, track_vectors, track_vector_dim)
    sessions = _session_sums(plays, track_cols)
    earlier = (
        Window.partitionBy(C.USER_ID).orderBy(SESSION_START, C.SESSION_ID).rowsBetween(Window.unboundedPreceding, -1)
    )
    history = sessions.select(
        C.USER_ID,
        C.SESSION_ID,
        SESSION_START,
        *[F.sum(c).over(earlier).alias(f"_h{c}") for c in _SUM_COLUMNS],
    ).crossJoin(_global_rates(plays, track_cols))
    users = history.select(C.USER_ID, C.SESSION_ID, SESSION_START, *_smoothed("_h", cfg.history_prior_strength))

    in_session = Window.partitionBy(C.USER_ID, C.SESSION_ID).orderBy(C.POSITION)
    last_not_skipped = F.max(F.when(F.col(LABEL_SKIPPED) == 0, F.col(C.POSITION))).over(
        in_session.rowsBetween(Window.unboundedPreceding, -1)
    )
    run_before = F.col(C.POSITION) - 1 - F.coalesce(last_not_skipped, F.lit(0))
    last_position = F.max(C.POSITION).over(Window.partitionBy(C.USER_ID, C.SESSION_ID))
    if ended_from == "exploration":
        # Only the exploration log says why a session ended (its served length); organic sessions mostly
        # end when their playlist or album runs out, which is not the listener leaving: no label there.
        explore = events.where(F.col(C.CONTEXT_TYPE) == C.EXPLORATION_CONTEXT)
        plays = plays.join(_served_lengths(explore), [C.USER_ID, C.SESSION_ID], "left")
        ended = F.when(F.col(SERVED).isNotNull(), _ended_label(last_position))
    else:
        ended = (F.col(C.POSITION) == last_position).cast("int")
    context = plays.select(
        "*",
        ended.alias(LABEL_ENDED),
        F.least(F.col(C.POSITION).cast("double") / cfg.max_position, F.lit(1.0)).alias("c_position"),
        (F.least(run_before, F.lit(SKIP_RUN_CAP)).cast("double") / SKIP_RUN_CAP).alias("c_consecutive_skips"),
    )
    df = context.join(users, [C.USER_ID, C.SESSION_ID]).join(track_cols, C.TRACK_ID, "left")
    df = _with_user_vectors(df, user_vectors, user_vector_dim)
    extra = (["u_vector"] if user_vectors is not None else []) + (["t_vector"] if track_vectors is not None else [])
    return df.select(
        C.USER_ID,
        C.SESSION_ID,
        SESSION_START,
        C.POSITION,
        C.TRACK_ID,
        *USER_COLUMNS,
        *TRACK_COLUMNS,
        *CONTEXT_COLUMNS,
        *extra,
        *LABELS,
        LABEL_ENDED,
    )


def current_user_context(
    events: DataFrame,
    tracks: DataFrame,
    cfg: RlConfig,
    *,
    user_vectors: DataFrame | None = None,
    user_vector_dim: int = 0,
) -> DataFrame:
    """Per user: the ``u_*`` columns over *all* their history, i.e. the context of their next session."""
    plays = labelled_plays(events, tracks, cfg)
    track_cols = track_feature_columns(tracks, plays, cfg)
    totals = (
        _session_sums(plays, track_cols)
        .groupBy(C.USER_ID)
        .agg(*[F.sum(c).alias(f"_h{c}") for c in _SUM_COLUMNS])
        .crossJoin(_global_rates(plays, track_cols))
    )
    df = totals.select(C.USER_ID, *_smoothed("_h", cfg.history_prior_strength))
    return _with_user_vectors(df, user_vectors, user_vector_dim)


# --- packing and splitting ------------------------------------------------------------------------


def _float_array(names: tuple[str, ...], vector: str | None) -> Column:
    arr = F.array(*[F.col(n).cast("float") for n in names])
    if vector is not None:
        arr = F.concat(arr, F.col(vector).cast(T.ArrayType(T.FloatType())))
    return arr


def pack_features(df: DataFrame, layout: FeatureLayout) -> DataFrame:
    """Replace the flat ``u_*`` / ``t_*`` / ``c_*`` columns by three float arrays in ``layout`` order.

    The arrays are what torch consumes (one ``np.stack`` per block); blocks whose columns are absent from
    ``df`` are skipped, so this packs training rows, user context rows and track rows alike.
    """
    out = df
    blocks = (
        (USER_FEATURES, layout.user, "u_vector" if layout.user_vector_dim else None),
        (TRACK_FEATURES, layout.track, "t_vector" if layout.track_vector_dim else None),
        (CONTEXT_FEATURES, layout.context, None),
    )
    for name, cols, vector in blocks:
        if all(c in df.columns for c in cols):
            out = out.withColumn(name, _float_array(cols, vector))
            out = out.drop(*cols, *([vector] if vector else []))
    return out


def assign_split(df: DataFrame, cfg: RlConfig) -> DataFrame:
    """Add ``split`` (train / validation / test), by a seeded hash of the session so a session stays whole."""
    u = (F.abs(F.xxhash64(F.col(C.USER_ID), F.col(C.SESSION_ID), F.lit(cfg.seed))) % 1_000_000) / 1_000_000.0
    split = (
        F.when(u < cfg.test_fraction, F.lit("test"))
        .when(u < cfg.test_fraction + cfg.validation_fraction, F.lit("validation"))
        .otherwise(F.lit("train"))
    )
    return df.withColumn(SPLIT, split)
