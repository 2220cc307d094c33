"""``spotrec maintenance``: OPTIMIZE (compact small files) and VACUUM (delete unreferenced files) every table.

Incremental steps leave many small files behind (each ingest MERGE adds a few per date partition,
each weekly ``replace_where`` a few more), and every overwrite leaves the previous version's files on
storage for time travel. Run this weekly (``spotrec maintenance``, ``jobs/maintenance.py`` or the
``spotrec_maintenance`` job of the Databricks bundle; see ``docs/operations.md``): OPTIMIZE bin-packs
each partition's files into large ones (a new table version with the same rows), then VACUUM deletes
files no version younger than ``retain_hours`` references.

VACUUM limits time travel: after it, versions older than ``retain_hours`` can no longer be read, and a
reader or writer running longer than ``retain_hours`` could lose files it still needs. Delta therefore
refuses retention below its 7-day default unless told otherwise; so does :func:`run_maintenance`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from pyspark.sql import SparkSession

from spotrec.errors import SpotrecError
from spotrec.steps.base import StepContext, StepResult
from spotrec.storage import Storage
from spotrec.tables import TableSpec, all_tables

log = logging.getLogger(__name__)

DEFAULT_RETAIN_HOURS = 168
"""Delta's default ``delta.deletedFileRetentionDuration`` (7 days)."""

RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


class MaintenanceError(SpotrecError, ValueError):
    """Maintenance was asked for something unsafe or unknown (checked before any table is touched)."""


def select_tables(names: Sequence[str] | None) -> tuple[TableSpec, ...]:
    """The specs named ``layer.name`` (every declared table when ``names`` is empty), in catalogue order.

    Raises:
        MaintenanceError: a name is not a declared table (the message lists the known ones).
    """
    specs = all_tables()
    if not names:
        return specs
    known = {spec.full_name for spec in specs}
    unknown = sorted(set(names) - known)
    if unknown:
        raise MaintenanceError(f"unknown table(s) {unknown}; known: {sorted(known)}")
    return tuple(spec for spec in specs if spec.full_name in set(names))


def parse_zorder(items: Sequence[str]) -> dict[str, list[str]]:
    """``["silver.listen_events=user_id,track_id", ...]`` -> ``{"silver.listen_events": ["user_id", "track_id"]}``.

    Raises:
        MaintenanceError: an item is not ``TABLE=COL[,COL...]`` or names a table twice.
    """
    out: dict[str, list[str]] = {}
    for item in items:
        table, _, columns = item.partition("=")
        cols = [c.strip() for c in columns.split(",") if c.strip()]
        if not table.strip() or not cols:
            raise MaintenanceError(f"--zorder {item!r} must look like layer.table=column[,column...]")
        if table.strip() in out:
            raise MaintenanceError(f"--zorder names {table.strip()} twice")
        out[table.strip()] = cols
    return out


def run_maintenance(
    spark: SparkSession,
    storage: Storage,
    *,
    retain_hours: float = DEFAULT_RETAIN_HOURS,
    tables: Sequence[TableSpec] | None = None,
    zorder_by: Mapping[str, Sequence[str]] | None = None,
    allow_short_retention: bool = False,
    vacuum: bool = True,
) -> list[str]:
    """OPTIMIZE then VACUUM every table of ``tables`` that exists; tables not yet written are skipped.

    Args:
        spark: the session (only used to relax Delta's retention check when asked).
        storage: where the tables live (paths or ``catalog.schema``).
        retain_hours: VACUUM keeps files that a version younger than this still references.
        tables: the table specs to maintain (default: every declared table, :func:`spotrec.tables.all_tables`,
            model tables included).
        zorder_by: optional ``{"layer.name": [columns]}``; those tables are Z-ordered by the columns
            instead of plainly compacted (e.g. ``{"silver.listen_events": ["user_id"]}`` speeds up
            per-user reads; costs a full rewrite each time).
        allow_short_retention: permit ``retain_hours`` below 168 (disables Delta's safety check for the
            duration of this call). Only safe when no job reads or writes the tables meanwhile.
        vacuum: False runs OPTIMIZE only.

    Returns:
        The full names (``layer.name``) of the tables maintained, in ``tables`` order.

    Raises:
        MaintenanceError: (a ``ValueError``) ``retain_hours`` is negative, or below 168 without
            ``allow_short_retention``, or ``zorder_by`` names a table not in ``tables``. Checked before any
            table is touched.
    """
    tables = all_tables() if tables is None else tables
    if retain_hours < 0:
        raise MaintenanceError(f"retain_hours must be >= 0, got {retain_hours}")
    if vacuum and retain_hours < DEFAULT_RETAIN_HOURS and not allow_short_retention:
        raise MaintenanceError(
            f"retain_hours={retain_hours} is below Delta's {DEFAULT_RETAIN_HOURS} h safety minimum: a job "
            "running longer than that could lose files; allow short retention explicitly "
            "(--allow-short-retention) only when no job reads or writes the tables meanwhile"
        )
    zorder = dict(zorder_by or {})
    unknown = sorted(set(zorder) - {spec.full_name for spec in tables})
    if unknown:
        raise MaintenanceError(f"zorder_by names unknown table(s) {unknown}")

    previous = spark.conf.get(RETENTION_CHECK, "true") or "true"
    if vacuum and retain_hours < DEFAULT_RETAIN_HOURS:
        spark.conf.set(RETENTION_CHECK, "false")
    done: list[str] = []
    try:
        for spec in tables:
            if not storage.exists(spec):
                continue
            table = storage.delta_table(spec)
            optimizer = table.optimize()
            columns = list(zorder.get(spec.full_name, ()))
            metrics = optimizer.executeZOrderBy(*columns) if columns else optimizer.executeCompaction()
            stats = metrics.select("metrics.numFilesAdded", "metrics.numFilesRemoved").first()
            if vacuum:
                table.vacuum(float(retain_hours))
            log.info(
                "maintained %s: OPTIMIZE%s added %s / removed %s files%s",
                spec.full_name,
                f" ZORDER BY {columns}" if columns else "",
                stats[0] if stats else 0,
                stats[1] if stats else 0,
                f", VACUUM RETAIN {retain_hours} HOURS" if vacuum else "",
            )
            done.append(spec.full_name)
    finally:
        spark.conf.set(RETENTION_CHECK, previous)
    return done


def run(ctx: StepContext) -> StepResult:
    specs = select_tables(ctx.option("table"))
    zorder = parse_zorder(ctx.option("zorder", []))
    retain = ctx.option("retain_hours", DEFAULT_RETAIN_HOURS)
    vacuum = not ctx.option("no_vacuum", False)
    # inputs and outputs name the same tables: ops.runs then shows each table's version before and after.
    with ctx.tracked("maintenance", inputs=list(specs), outputs=list(specs)) as run_id:
        done = run_maintenance(
            ctx.spark,
            ctx.storage,
            retain_hours=retain,
            tables=specs,
            zorder_by=zorder,
            allow_short_retention=ctx.option("allow_short_retention", False),
            vacuum=vacuum,
        )
    what = f"optimized and vacuumed (retain {retain:g} h)" if vacuum else "optimized"
    ctx.say(f"[maintenance] {what} {len(done)} tables: {', '.join(done) or 'none exist yet'}")
    return ctx.result("maintenance", run_id)
