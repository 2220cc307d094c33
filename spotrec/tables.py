"""Every table spotrec writes: name, schema, keys, partitioning, meaning; and the I/O helpers.

Tables are addressed through :class:`Storage`, which maps a :class:`TableSpec` to either a Delta folder
under a root path (local runs, spark-submit on HDFS/S3) or a ``catalog.schema.layer_name`` table
(Databricks / Unity Catalog). Nothing else in spotrec builds a table path or name.

All writes conform the frame to the declared schema first (column order and types), so a transform
that drops or renames a column fails here with a message instead of producing a silently different table.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.errors import MissingTableError, SchemaMismatchError
from spotrec.retry import retry_on_conflict

if TYPE_CHECKING:
    from spotrec.config import StorageConfig


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
        ("acousticness", D, True),
        ("danceability", D, True),
        ("energy", D, True),
        ("valence", D, True),
        ("tempo", D, True),
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
        ("rows_read", L, False),
        ("silver_new", L, False),
        ("quarantined", L, False),
        ("duplicates", L, False),
        (C.INGEST_TIME, TS, False),
    ),
    keys=(C.INGEST_RUN_ID, C.SOURCE_FILE),
    produced_by="ingest",
    description="Per ingest run and file: rows read and where each went (silver, quarantine, duplicate).",
)

RUNS = TableSpec(
    "ops",
    "runs",
    _schema(
        (C.RUN_ID, S, False),
        ("step", S, False),
        ("status", S, False),
        ("started_at", TS, False),
        ("finished_at", TS, True),
        ("config", S, True),
        ("inputs", T.MapType(S, L), True),
        ("outputs", T.MapType(S, L), True),
        ("message", S, True),
    ),
    keys=(C.RUN_ID, "step"),
    produced_by="every step",
    description="Lineage: which config and input table versions produced which output table versions.",
)

MODEL_METRICS = TableSpec(
    "ops",
    "model_metrics",
    _schema(
        (C.RUN_ID, S, False),
        (C.MODEL, S, False),
        (C.MODEL_VERSION, S, True),
        ("dataset", S, False),
        (C.METRIC, S, False),
        (C.K, I, True),
        (C.VALUE, D, True),
        ("created_at", TS, False),
    ),
    keys=(C.RUN_ID, C.MODEL, "dataset", C.METRIC, C.K),
    produced_by="evaluation steps",
    description="One row per (run, model, dataset, metric, k): every evaluation figure ever computed.",
)

USER_FACTORS = TableSpec(
    "gold",
    "user_factors",
    _schema(
        (C.USER_IDX, I, False),
        (C.USER_ID, S, False),
        ("features", FLOATS, False),
        (C.MODEL_VERSION, S, False),
    ),
    keys=(C.USER_ID,),
    produced_by="als",
    description="ALS user factor vectors of the latest model version.",
)

TRACK_FACTORS = TableSpec(
    "gold",
    "track_factors",
    _schema(
        (C.TRACK_IDX, I, False),
        (C.TRACK_ID, S, False),
        ("features", FLOATS, False),
        (C.MODEL_VERSION, S, False),
    ),
    keys=(C.TRACK_ID,),
    produced_by="als",
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
    produced_by="discover",
    description="Per week and user: the top tracks the user has never played, at most N per artist.",
)

SIMILAR_TRACKS = TableSpec(
    "gold",
    "similar_tracks",
    _schema(
        (C.TRACK_ID, S, False),
        (C.RANK, I, False),
        ("similar_track_id", S, False),
        (C.SCORE, D, False),
        (C.MODEL_VERSION, S, False),
    ),
    keys=(C.TRACK_ID, C.RANK),
    produced_by="discover",
    description="Each track's nearest tracks by cosine similarity of ALS factors.",
)

TASTE_CLUSTERS = TableSpec(
    "gold",
    "taste_clusters",
    _schema((C.TRACK_ID, S, False), ("cluster", I, False), ("distance", D, True), (C.MODEL_VERSION, S, False)),
    keys=(C.TRACK_ID,),
    produced_by="discover",
    description="k-means cluster of each track's (normalised) ALS factor vector.",
)

USER_TASTE_PROFILE = TableSpec(
    "gold",
    "user_taste_profile",
    _schema((C.USER_ID, S, False), ("cluster", I, False), ("share", D, False), (C.MODEL_VERSION, S, False)),
    keys=(C.USER_ID, "cluster"),
    produced_by="discover",
    description="Each user's share of listening confidence per taste cluster (shares sum to 1).",
)

ALL_TABLES: tuple[TableSpec, ...] = (
    BRONZE_EVENTS,
    SILVER_EVENTS,
    QUARANTINE,
    TRACKS,
    PLAYLISTS,
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
    INGEST_LOG,
    RUNS,
    MODEL_METRICS,
)


def all_tables() -> tuple[TableSpec, ...]:
    """Every declared table, including those the model packages declare in their own modules."""
    specs = list(ALL_TABLES)
    for module in EXTRA_TABLE_MODULES:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        specs += [v for v in vars(mod).values() if isinstance(v, TableSpec) and v not in specs]
    return tuple(specs)


EXTRA_TABLE_MODULES: tuple[str, ...] = ("spotrec.discovery.tables", "spotrec.playlists.job")
"""Modules whose module-level TableSpec constants are part of the catalogue (model packages)."""


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Select and cast ``df`` to ``spec``'s schema, in order; raise if a column is missing."""
    missing = [f.name for f in spec.schema.fields if f.name not in df.columns]
    if missing:
        raise SchemaMismatchError(f"cannot write {spec.full_name}: missing column(s) {missing}; got {df.columns}")
    return df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in spec.schema.fields])


class Storage:
    """Reads and writes :class:`TableSpec` tables as Delta, by path or by catalog name."""

    def __init__(self, spark: SparkSession, cfg: StorageConfig) -> None:
        self.spark = spark
        self.cfg = cfg

    # -- addressing -------------------------------------------------------------------------
    @property
    def uses_catalog(self) -> bool:
        return self.cfg.catalog is not None

    def path(self, spec: TableSpec) -> str:
        root = self.cfg.root.rstrip("/")
        if ":" not in root:  # a plain local path: Delta's table builder rejects relative locations
            root = os.path.abspath(root)
        return f"{root}/{spec.layer}/{spec.name}"

    def table_name(self, spec: TableSpec) -> str:
        return f"{self.cfg.catalog}.{self.cfg.schema}.{spec.layer}_{spec.name}"

    def sql_name(self, spec: TableSpec) -> str:
        """How to name the table in SQL: ``catalog.schema.t`` or ``delta.`/path```."""
        return self.table_name(spec) if self.uses_catalog else f"delta.`{self.path(spec)}`"

    # -- reading ----------------------------------------------------------------------------
    def exists(self, spec: TableSpec) -> bool:
        from delta.tables import DeltaTable

        if self.uses_catalog:
            return bool(self.spark.catalog.tableExists(self.table_name(spec)))
        return bool(DeltaTable.isDeltaTable(self.spark, self.path(spec)))

    def delta_table(self, spec: TableSpec):  # type: ignore[no-untyped-def]
        from delta.tables import DeltaTable

        if self.uses_catalog:
            return DeltaTable.forName(self.spark, self.table_name(spec))
        return DeltaTable.forPath(self.spark, self.path(spec))

    def read(self, spec: TableSpec, version: int | None = None) -> DataFrame:
        """The table as a DataFrame; a clear error names the step to run when it does not exist."""
        if not self.exists(spec):
            where = self.table_name(spec) if self.uses_catalog else self.path(spec)
            raise MissingTableError(
                f"{spec.full_name} does not exist at {where}: run `spotrec {spec.produced_by}` first "
                f"(or check storage.root / storage.catalog in the config)"
            )
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        df = reader.table(self.table_name(spec)) if self.uses_catalog else reader.load(self.path(spec))
        stale = [f.name for f in spec.schema.fields if f.name not in df.columns]
        if stale:
            raise SchemaMismatchError(
                f"{spec.full_name} has a stale schema (missing {stale}): it was written by an older spotrec; "
                f"rerun `spotrec {spec.produced_by}` or drop the table"
            )
        return df

    def version(self, spec: TableSpec) -> int | None:
        """Latest Delta version, or None when the table does not exist."""
        if not self.exists(spec):
            return None
        row = self.delta_table(spec).history(1).select("version").first()
        return int(row[0]) if row else None

    # -- writing ----------------------------------------------------------------------------
    def ensure(self, spec: TableSpec) -> None:
        """Create the empty table with its schema and partitioning if it does not exist."""
        from delta.tables import DeltaTable

        if self.exists(spec):
            return
        builder = DeltaTable.createIfNotExists(self.spark).addColumns(spec.schema)
        builder = builder.tableName(self.table_name(spec)) if self.uses_catalog else builder.location(self.path(spec))
        if spec.partition_by:
            builder = builder.partitionedBy(*spec.partition_by)
        if spec.description:
            builder = builder.comment(spec.description)
        builder.execute()

    def _writer(self, df: DataFrame, spec: TableSpec, mode: str):  # type: ignore[no-untyped-def]
        writer = conform(df, spec).write.format("delta").mode(mode)
        if spec.partition_by:
            writer = writer.partitionBy(*spec.partition_by)
        return writer

    def _save(self, writer, spec: TableSpec) -> None:  # type: ignore[no-untyped-def]
        if self.uses_catalog:
            writer.saveAsTable(self.table_name(spec))
        else:
            writer.save(self.path(spec))

    # Every write retries when it loses a Delta optimistic-concurrency race (see spotrec.retry): the
    # losing commit wrote nothing, and each operation is idempotent against the table it re-reads.
    def overwrite(self, spec: TableSpec, df: DataFrame) -> None:
        """Replace the whole table (one atomic Delta commit)."""
        retry_on_conflict(
            lambda: self._save(self._writer(df, spec, "overwrite").option("overwriteSchema", "true"), spec),
            what=f"overwrite of {spec.full_name}",
        )

    def append(self, spec: TableSpec, df: DataFrame) -> None:
        retry_on_conflict(
            lambda: self._save(self._writer(df, spec, "append"), spec), what=f"append to {spec.full_name}"
        )

    def replace_where(self, spec: TableSpec, df: DataFrame, condition: str) -> None:
        """Atomically replace the rows matching ``condition`` (e.g. one week's partition)."""
        retry_on_conflict(lambda: self.ensure(spec), what=f"create {spec.full_name}")
        retry_on_conflict(
            lambda: self._save(self._writer(df, spec, "overwrite").option("replaceWhere", condition), spec),
            what=f"replaceWhere on {spec.full_name}",
        )

    def merge_new(self, spec: TableSpec, df: DataFrame) -> None:
        """Insert rows whose keys are not in the table yet (insert-only MERGE: idempotent, concurrent-safe)."""
        retry_on_conflict(lambda: self.ensure(spec), what=f"create {spec.full_name}")
        retry_on_conflict(lambda: self._merge_new_once(spec, df), what=f"MERGE into {spec.full_name}")

    def _merge_new_once(self, spec: TableSpec, df: DataFrame) -> None:
        cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in spec.keys)
        partition_hint = ""
        for p in spec.partition_by:
            # Lets Delta prune files and narrows conflict detection between concurrent writers.
            partition_hint += f" AND t.`{p}` = s.`{p}`"
        (
            self.delta_table(spec)
            .alias("t")
            .merge(conform(df, spec).alias("s"), cond + partition_hint)
            .whenNotMatchedInsertAll()
            .execute()
        )

    def upsert(self, spec: TableSpec, df: DataFrame) -> None:
        """MERGE on the keys: update matching rows, insert new ones."""
        retry_on_conflict(lambda: self.ensure(spec), what=f"create {spec.full_name}")
        retry_on_conflict(lambda: self._upsert_once(spec, df), what=f"MERGE into {spec.full_name}")

    def _upsert_once(self, spec: TableSpec, df: DataFrame) -> None:
        cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in spec.keys)
        (
            self.delta_table(spec)
            .alias("t")
            .merge(conform(df, spec).alias("s"), cond)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )
