"""Delta table I/O: every read and write of a :class:`~spotrec.tables.TableSpec` goes through :class:`Storage`.

:class:`Storage` maps a spec to either a Delta folder under a root path (local runs, spark-submit on
HDFS/S3) or a ``catalog.schema.layer_name`` table (Databricks / Unity Catalog); nothing else in spotrec
builds a table path or name. Writes retry when they lose a Delta commit race (:mod:`spotrec.retry`).
Only ``spotrec.steps`` (and tools over whole tables) use it: model packages stay pure transforms.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession

from spotrec.errors import MissingTableError, SchemaMismatchError
from spotrec.retry import retry_on_conflict
from spotrec.tables import TableSpec, conform

if TYPE_CHECKING:
    from spotrec.config import StorageConfig


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

        if not self.exists(spec):
            builder = DeltaTable.createIfNotExists(self.spark).addColumns(spec.schema)
            where = self.table_name(spec) if self.uses_catalog else self.path(spec)
            builder = builder.tableName(where) if self.uses_catalog else builder.location(where)
            if spec.partition_by:
                builder = builder.partitionedBy(*spec.partition_by)
            if spec.description:
                builder = builder.comment(spec.description)
            try:
                builder.execute()
            except Exception as exc:
                # A concurrent writer created (or is creating) it between exists() and execute().
                if "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION" not in str(exc) and not self.exists(spec):
                    raise
        self._await_visible(spec)

    def _await_visible(self, spec: TableSpec, attempts: int = 20, delay_s: float = 0.5) -> None:
        """Wait until the table can be opened for a MERGE.

        A table that a concurrent writer (a second ingest) is creating at this moment already looks like a
        Delta table to ``isDeltaTable`` while ``DeltaTable.forPath`` still answers DELTA_TABLE_NOT_FOUND;
        the MERGE that follows would fail on it (seen in tests/test_faults.py's concurrent ingests).
        """
        for attempt in range(attempts):
            try:
                self.delta_table(spec)
                return
            except Exception as exc:
                transient = "DELTA_TABLE_NOT_FOUND" in str(exc) or "is not a Delta table" in str(exc)
                if not transient or attempt == attempts - 1:
                    raise
                time.sleep(delay_s)

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
