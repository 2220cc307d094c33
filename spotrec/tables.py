"""Every table spotrec writes: name, schema, keys, partitioning, the step that produces it, meaning.

The contract of the pipeline's data: :mod:`spotrec.storage` reads and writes these specs, ``docs/tables.md``
is generated from them, and a test checks that every ``produced_by`` names a real CLI step. All writes
conform the frame to the declared schema first (:func:`conform`), so a transform that drops or renames a
column fails with a message instead of producing a silently different table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.errors import SchemaMismatchError


@dataclass(frozen=True)
class TableSpec:
    """A table's identity and contract."""

    layer: str
    name: str
    schema: T.StructType
    keys: tuple[str, ...]
    partition_by: tuple[str, ...] = ()
    produced_by: str = ""
    description: str = ""
    column_docs: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def full_name(self) -> str:
        return f"{self.layer}.{self.name}"


def _schema(*fields: tuple[str, T.DataType, bool]) -> T.StructType:
    return T.StructType([T.StructField(n, t, nullable) for n, t, nullable in fields])


S, L, I, D, B, TS = (
    T.StringType(),
    T.LongType(),
    T.IntegerType(),
    T.DoubleType(),
    T.BooleanType(),
    T.TimestampType(),
)
FLOATS = T.ArrayType(T.FloatType(), containsNull=False)

_RAW_EVENT_FIELDS: list[tuple[str, T.DataType, bool]] = [
    (C.EVENT_ID, S, True),
    (C.USER_ID, S, True),
    (C.TRACK_ID, S, True),
    (C.TRACK_NAME, S, True),
    (C.ARTIST_NAME, S, True),
    (C.ALBUM_NAME, S, True),
    (C.TS, S, True),
    (C.MS_PLAYED, S, True),
    (C.TRACK_DURATION_MS, S, True),
    (C.CONTEXT_TYPE, S, True),
    (C.CONTEXT_ID, S, True),
    (C.REASON_START, S, True),
    (C.REASON_END, S, True),
    (C.SKIPPED, S, True),
    (C.SHUFFLE, S, True),
    (C.SAVED, S, True),
    (C.SESSION_ID, S, True),
    (C.SESSION_POSITION, S, True),
]
RAW_EVENT_SCHEMA = _schema(*_RAW_EVENT_FIELDS)
"""What every reader returns besides bookkeeping: canonical fields, still as strings (validated in silver)."""

READER_SCHEMA = _schema(
    (C.SOURCE, S, False),
    (C.SOURCE_FILE, S, False),
    (C.RECORD_NO, L, False),
    (C.RAW, S, True),
    *_RAW_EVENT_FIELDS,
)
"""The exact output schema of every event reader in ``spotrec.sources``."""

BRONZE_EVENTS = TableSpec(
    "bronze",
    "listen_events",
    _schema(
        (C.INGEST_RUN_ID, S, False),
        (C.INGEST_TIME, TS, False),
        *[(f.name, f.dataType, f.nullable) for f in READER_SCHEMA.fields],
    ),
    keys=(C.SOURCE_FILE, C.RECORD_NO),
    produced_by="ingest",
    description="Every raw record as read (strings), with its file, record number and ingest run.",
)

SILVER_EVENTS = TableSpec(
    "silver",
    "listen_events",
    _schema(
        (C.EVENT_ID, S, False),
        (C.USER_ID, S, False),
        (C.TRACK_ID, S, False),
        (C.TS, TS, False),
        (C.MS_PLAYED, L, True),
        (C.TRACK_DURATION_MS, L, True),
        (C.CONTEXT_TYPE, S, True),
        (C.CONTEXT_ID, S, True),
        (C.REASON_START, S, True),
        (C.REASON_END, S, True),
        (C.SKIPPED, B, True),
        (C.SHUFFLE, B, True),
        (C.SAVED, B, True),
        (C.SESSION_ID, S, True),
        (C.SESSION_POSITION, I, True),
        (C.SOURCE, S, False),
        (C.SOURCE_FILE, S, False),
        (C.INGEST_RUN_ID, S, False),
        (C.EVENT_DATE, T.DateType(), False),
    ),
    keys=(C.EVENT_ID,),
    partition_by=(C.EVENT_DATE,),
    produced_by="ingest",
    description="Typed, validated, deduplicated listen events in the canonical schema (UTC).",
)

QUARANTINE = TableSpec(
    "silver",
    "quarantine",
    _schema(
        (C.SOURCE, S, False),
        (C.SOURCE_FILE, S, False),
        (C.RECORD_NO, L, False),
        (C.RAW, S, True),
        (C.REASON, S, False),
        (C.INGEST_RUN_ID, S, False),
        (C.INGEST_TIME, TS, False),
    ),
    keys=(C.SOURCE_FILE, C.RECORD_NO),
    produced_by="ingest",
    description="Raw records that failed validation, with the first failed rule as reason.",
)

TRACKS = TableSpec(
    "silver",
    "tracks",
    _schema(
        (C.TRACK_ID, S, False),
        (C.TRACK_NAME, S, True),
        (C.ARTIST_ID, S, True),
        (C.ARTIST_NAME, S, True),
        (C.ALBUM_ID, S, True),
        (C.ALBUM_NAME, S, True),
        (C.DURATION_MS, L, True),
        (C.ACOUSTICNESS, D, True),
        (C.DANCEABILITY, D, True),
        (C.ENERGY, D, True),
        (C.VALENCE, D, True),
        (C.TEMPO, D, True),
        (C.SOURCE, S, False),
    ),
    keys=(C.TRACK_ID,),
    produced_by="ingest",
    description="Track catalogue: names, artist, album, duration and audio-like features when known.",
)

PLAYLISTS = TableSpec(
    "silver",
    "playlists",
    _schema(
        (C.PLAYLIST_ID, S, False),
        (C.PLAYLIST_NAME, S, True),
        (C.USER_ID, S, True),
        (C.POSITION, I, False),
        (C.TRACK_ID, S, False),
        (C.SOURCE, S, False),
    ),
    keys=(C.PLAYLIST_ID, C.POSITION),
    produced_by="ingest",
    description="User-made playlists: one row per (playlist, position), in playlist order.",
)

EXPLORATION_SESSIONS = TableSpec(
    "silver",
    "exploration_sessions",
    _schema(
        (C.USER_ID, S, False),
        (C.SESSION_ID, S, False),
        (C.POSITION, I, False),
        (C.TS, TS, True),
        (C.TRACK_ID, S, False),
        (C.COMPLETION, D, True),
        (C.LABEL_COMPLETED, I, False),
        (C.LABEL_SKIPPED, I, False),
        (C.LABEL_LISTENED, I, False),
        (C.LABEL_ENDED, I, False),
    ),
    keys=(C.USER_ID, C.SESSION_ID, C.POSITION),
    produced_by="rl",
    description="The exploration log: every play of a session whose tracks were a candidate pool served in "
    "random order (context_type 'exploration'), with the user model's labels. Rebuilt from "
    "silver.listen_events by each rl run; empty when the input has no such sessions.",
    column_docs={
        C.POSITION: "1-based slot in the session.",
        C.COMPLETION: "ms_played / track duration, capped at 1 (null when the length is unknown).",
        C.LABEL_COMPLETED: "1 when the play reached rl.completion_fraction of the track (or was not skipped).",
        C.LABEL_SKIPPED: "The event's skipped flag (else: played no longer than rl.listen_threshold_s).",
        C.LABEL_LISTENED: "1 when played longer than rl.listen_threshold_s seconds.",
        C.LABEL_ENDED: "1 when the listener left after this play: the session's last play, unless it was the "
        "last served track (context_id 'exploration:<n>'; then the list ran out: 0). The termination head's label.",
    },
)

PLAY_COUNTS = TableSpec(
    "silver",
    "play_counts",
    _schema(
        (C.USER_ID, S, False),
        (C.TRACK_ID, S, False),
        (C.PLAY_COUNT, L, False),
        (C.SOURCE, S, False),
    ),
    keys=(C.USER_ID, C.TRACK_ID, C.SOURCE),
    produced_by="ingest",
    description="Pre-aggregated play counts (e.g. HetRec user_artists.dat; items may be artists).",
)

USER_INDEX = TableSpec(
    "gold",
    "user_index",
    _schema((C.USER_ID, S, False), (C.USER_IDX, I, False)),
    keys=(C.USER_ID,),
    produced_by="matrix",
    description="Stable integer index per user (MLlib ALS needs ints); new users get new numbers.",
)

TRACK_INDEX = TableSpec(
    "gold",
    "track_index",
    _schema((C.TRACK_ID, S, False), (C.TRACK_IDX, I, False)),
    keys=(C.TRACK_ID,),
    produced_by="matrix",
    description="Stable integer index per track; existing tracks keep their number across runs.",
)

INTERACTIONS = TableSpec(
    "gold",
    "interactions",
    _schema(
        (C.USER_ID, S, False),
        (C.TRACK_ID, S, False),
        (C.USER_IDX, I, False),
        (C.TRACK_IDX, I, False),
        (C.CONFIDENCE, D, False),
        (C.PLAYS, L, False),
        (C.SKIPS, L, False),
        (C.SAVES, L, False),
        (C.MS_PLAYED, L, False),
        (C.LAST_PLAYED, TS, True),
    ),
    keys=(C.USER_ID, C.TRACK_ID),
    produced_by="matrix",
    description="Weighted play-count matrix: one row per (user, track) with implicit-feedback confidence.",
)

INGEST_LOG = TableSpec(
    "ops",
    "ingest_log",
    _schema(
        (C.INGEST_RUN_ID, S, False),
        (C.SOURCE, S, False),
        (C.SOURCE_FILE, S, False),
        (C.ROWS_READ, L, False),
        (C.SILVER_NEW, L, False),
        (C.QUARANTINED, L, False),
        (C.DUPLICATES, L, False),
        (C.EXCLUDED, L, False),
        (C.INGEST_TIME, TS, False),
    ),
    keys=(C.INGEST_RUN_ID, C.SOURCE_FILE),
    produced_by="ingest",
    description=(
        "Per ingest run and file: rows read and where each went (silver, quarantine, duplicate, or excluded "
        "by ingest.content: podcast / audiobook rows kept in bronze only)."
    ),
)

RUNS = TableSpec(
    "ops",
    "runs",
    _schema(
        (C.RUN_ID, S, False),
        (C.STEP, S, False),
        (C.STATUS, S, False),
        (C.STARTED_AT, TS, False),
        (C.FINISHED_AT, TS, True),
        (C.CONFIG, S, True),
        (C.INPUTS, T.MapType(S, L), True),
        (C.OUTPUTS, T.MapType(S, L), True),
        (C.MESSAGE, S, True),
    ),
    keys=(C.RUN_ID, C.STEP),
    produced_by="pipeline",
    description="Lineage: which config and input table versions produced which output table versions.",
)

MODEL_METRICS = TableSpec(
    "ops",
    "model_metrics",
    _schema(
        (C.RUN_ID, S, False),
        (C.MODEL, S, False),
        (C.MODEL_VERSION, S, True),
        (C.DATASET, S, False),
        (C.METRIC, S, False),
        (C.K, I, True),
        (C.VALUE, D, True),
        (C.CREATED_AT, TS, False),
    ),
    keys=(C.RUN_ID, C.MODEL, C.DATASET, C.METRIC, C.K),
    produced_by="evaluate",
    description="One row per (run, model, dataset, metric, k): every evaluation figure ever computed.",
)

USER_FACTORS = TableSpec(
    "gold",
    "user_factors",
    _schema(
        (C.USER_IDX, I, False),
        (C.USER_ID, S, False),
        (C.FEATURES, FLOATS, False),
        (C.MODEL_VERSION, S, False),
    ),
    keys=(C.USER_ID,),
    produced_by="weekly",
    description="ALS user factor vectors of the latest model version.",
)

TRACK_FACTORS = TableSpec(
    "gold",
    "track_factors",
    _schema(
        (C.TRACK_IDX, I, False),
        (C.TRACK_ID, S, False),
        (C.FEATURES, FLOATS, False),
        (C.MODEL_VERSION, S, False),
    ),
    keys=(C.TRACK_ID,),
    produced_by="weekly",
    description="ALS track factor vectors of the latest model version.",
)

DISCOVER_WEEKLY = TableSpec(
    "gold",
    "discover_weekly",
    _schema(
        (C.WEEK, T.DateType(), False),
        (C.USER_ID, S, False),
        (C.RANK, I, False),
        (C.TRACK_ID, S, False),
        (C.ARTIST_ID, S, True),
        (C.SCORE, D, False),
        (C.MODEL_VERSION, S, False),
    ),
    keys=(C.WEEK, C.USER_ID, C.RANK),
    partition_by=(C.WEEK,),
    produced_by="weekly",
    description="Per week and user: the top tracks the user has never played, at most N per artist.",
)

SIMILAR_TRACKS = TableSpec(
    "gold",
    "similar_tracks",
    _schema(
        (C.TRACK_ID, S, False),
        (C.RANK, I, False),
        (C.SIMILAR_TRACK_ID, S, False),
        (C.SCORE, D, False),
        (C.MODEL_VERSION, S, False),
    ),
    keys=(C.TRACK_ID, C.RANK),
    produced_by="weekly",
    description="Each track's nearest tracks by cosine similarity of ALS factors.",
)

TASTE_CLUSTERS = TableSpec(
    "gold",
    "taste_clusters",
    _schema((C.TRACK_ID, S, False), (C.CLUSTER, I, False), (C.DISTANCE, D, True), (C.MODEL_VERSION, S, False)),
    keys=(C.TRACK_ID,),
    produced_by="weekly",
    description="k-means cluster of each track's (normalised) ALS factor vector.",
)

USER_TASTE_PROFILE = TableSpec(
    "gold",
    "user_taste_profile",
    _schema((C.USER_ID, S, False), (C.CLUSTER, I, False), (C.SHARE, D, False), (C.MODEL_VERSION, S, False)),
    keys=(C.USER_ID, C.CLUSTER),
    produced_by="weekly",
    description="Each user's share of listening confidence per taste cluster (shares sum to 1).",
)

TRACK_EMBEDDINGS = TableSpec(
    "gold",
    "track_embeddings",
    T.StructType(
        [
            T.StructField(C.TRACK_ID, S, False),
            T.StructField(C.METHOD, S, False),
            T.StructField(C.VECTOR, FLOATS, False),
            T.StructField(C.MODEL_VERSION, S, False),
        ]
    ),
    keys=(C.TRACK_ID, C.METHOD),
    produced_by="rnn",
    description="word2vec song vectors learnt from playlists and sessions (cbow_ns: torch; sg_hs: MLlib).",
    column_docs={
        C.METHOD: "cbow_ns (CBOW + negative sampling, torch) or sg_hs (skip-gram + hierarchical softmax, MLlib)",
        C.VECTOR: "the song vector (vector_size floats)",
    },
)

USER_TASTE_VECTORS = TableSpec(
    "gold",
    "user_taste_vectors",
    T.StructType(
        [
            T.StructField(C.USER_ID, S, False),
            T.StructField(C.VECTOR, FLOATS, False),
            T.StructField(C.MODEL_VERSION, S, False),
        ]
    ),
    keys=(C.USER_ID,),
    produced_by="rnn",
    description=(
        "Each user's taste vector from their last n plays: the RNN's query in song-vector space (l2/cosine loss: "
        "the predicted next song vector; softmax loss: scores songs by taste . vector + song bias)."
    ),
)

RNN_RECOMMENDATIONS = TableSpec(
    "gold",
    "rnn_recommendations",
    T.StructType(
        [
            T.StructField(C.USER_ID, S, False),
            T.StructField(C.RANK, I, False),
            T.StructField(C.TRACK_ID, S, False),
            T.StructField(C.DISTANCE, T.DoubleType(), False),
            T.StructField(C.MODEL_VERSION, S, False),
        ]
    ),
    keys=(C.USER_ID, C.RANK),
    produced_by="rnn",
    description="Nearest songs (Annoy) to each user's taste vector, without songs they played recently.",
    column_docs={
        C.DISTANCE: "Annoy distance between the taste vector and the song vector (angular by default); for the "
        "softmax RNN, the song's score taste . vector + bias (higher is better)"
    },
)

RL_PLAYLISTS = TableSpec(
    "gold",
    "rl_playlists",
    T.StructType(
        [
            T.StructField(C.USER_ID, S, False),
            T.StructField(C.SESSION, S, False),
            T.StructField(C.POSITION, I, False),
            T.StructField(C.TRACK_ID, S, False),
            T.StructField(C.Q_VALUE, D, False),
            T.StructField(C.PREDICTED_SKIP, D, True),
            T.StructField(C.POLICY_VERSION, S, False),
        ]
    ),
    keys=(C.USER_ID, C.SESSION, C.POSITION),
    produced_by="rl",
    description="Per user and session: the AH-DQN's playlist (1-based positions) with Q value and the user "
    "model's P(skip) per slot; one session's rows are replaced as a whole.",
    column_docs={
        C.SESSION: "Key of the generated session (default: the run's UTC date); pools are drawn per key.",
        C.POSITION: "1-based slot in the playlist.",
        C.Q_VALUE: "The agent's Q(state, track) when it chose the track: expected discounted session reward.",
        C.PREDICTED_SKIP: "The user model's P(skip) for the track at that slot, along the most likely path.",
        C.POLICY_VERSION: "Content hash of the AH-DQN checkpoint (file <artifacts>/rl/policy/<v>.pt).",
    },
)

USER_MODEL_METRICS = TableSpec(
    "gold",
    "user_model_metrics",
    T.StructType(
        [
            T.StructField(C.MODEL_VERSION, S, False),
            T.StructField(C.HEAD, S, False),
            T.StructField(C.PREDICTOR, S, False),
            T.StructField(C.METRIC, S, False),
            T.StructField(C.BIN, I, True),
            T.StructField(C.VALUE, D, True),
            T.StructField(C.CREATED_AT, T.TimestampType(), False),
        ]
    ),
    keys=(C.MODEL_VERSION, C.HEAD, C.PREDICTOR, C.METRIC, C.BIN),
    produced_by="rl",
    description="Held-out quality of each user model version per head (completed / skipped / listened): AUC "
    "and log-loss of the model, the global-rate and track-rate baselines and (synthetic world) the truth; "
    "calibration bins (count, mean predicted, observed, true).",
    column_docs={
        C.MODEL_VERSION: "Content hash of the user model checkpoint (<artifacts>/rl/user_model/<v>.pt).",
        C.HEAD: "completed | skipped | listened (played more than listen_threshold_s).",
        C.PREDICTOR: "user_model | global_rate | track_rate (the track's smoothed training rate) | truth.",
        C.METRIC: "auc | log_loss | n | calib_count | calib_mean_pred | calib_observed | calib_true.",
        C.BIN: "Calibration bin (equal width over predicted probability); null for scalar metrics.",
    },
)

ALL_TABLES: tuple[TableSpec, ...] = (
    BRONZE_EVENTS,
    SILVER_EVENTS,
    QUARANTINE,
    TRACKS,
    PLAYLISTS,
    EXPLORATION_SESSIONS,
    PLAY_COUNTS,
    USER_INDEX,
    TRACK_INDEX,
    INTERACTIONS,
    USER_FACTORS,
    TRACK_FACTORS,
    DISCOVER_WEEKLY,
    SIMILAR_TRACKS,
    TASTE_CLUSTERS,
    USER_TASTE_PROFILE,
    TRACK_EMBEDDINGS,
    USER_TASTE_VECTORS,
    RNN_RECOMMENDATIONS,
    USER_MODEL_METRICS,
    RL_PLAYLISTS,
    INGEST_LOG,
    RUNS,
    MODEL_METRICS,
)


def all_tables() -> tuple[TableSpec, ...]:
    """Every table spotrec writes, in pipeline order."""
    return ALL_TABLES


RNN_TABLES: tuple[TableSpec, ...] = (TRACK_EMBEDDINGS, USER_TASTE_VECTORS, RNN_RECOMMENDATIONS)
"""What the rnn step writes besides ops tables."""


def float_vector(column: str | Column) -> Column:
    """``column`` as array<float> with non-null elements, the tables' vector type.

    Spark cannot cast an array whose elements may be null into one whose elements may not, and frames built
    from Python or ``mapInPandas`` always declare nullable elements; a null element (never produced by the
    models) would become 0.
    """
    col = F.col(column) if isinstance(column, str) else column
    return F.transform(col.cast("array<float>"), lambda x: F.coalesce(x, F.lit(0.0).cast("float")))


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Select and cast ``df`` to ``spec``'s schema, in order; raise if a column is missing."""
    missing = [f.name for f in spec.schema.fields if f.name not in df.columns]
    if missing:
        raise SchemaMismatchError(f"cannot write {spec.full_name}: missing column(s) {missing}; got {df.columns}")
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in spec.schema.fields])
