"""``spotrec tables``: the row count and Delta version of every table that exists."""

from __future__ import annotations

from spotrec.steps.base import StepContext, StepResult
from spotrec.storage import Storage
from spotrec.tables import all_tables


def summarize_tables(storage: Storage) -> str:
    """Rows and Delta version of every table that exists, as an aligned text table."""
    lines = [f"{'table':32} {'rows':>12} {'version':>8}  location"]
    for spec in all_tables():
        if not storage.exists(spec):
            continue
        rows = storage.read(spec).count()
        where = storage.table_name(spec) if storage.uses_catalog else storage.path(spec)
        lines.append(f"{spec.full_name:32} {rows:>12,} {storage.version(spec)!s:>8}  {where}")
    return "\n".join(lines)


def run(ctx: StepContext) -> StepResult:
    ctx.say(summarize_tables(ctx.storage))
    return ctx.result("tables")
