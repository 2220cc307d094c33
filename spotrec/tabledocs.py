"""Render docs/tables.md from the TableSpecs, so the documentation cannot drift from the code.

``python -m spotrec.tabledocs > docs/tables.md``; a test fails when the file is out of date.
"""

from __future__ import annotations

from spotrec.tables import TableSpec, all_tables

HEADER = """# Tables

Generated from `spotrec/tables.py` by `python -m spotrec.tabledocs > docs/tables.md` (a test checks it is
current). Locally each table is a Delta folder `<storage.root>/<layer>/<name>`, queryable as
``delta.`warehouse/gold/interactions` ``; with `storage.catalog` set it is `<catalog>.<schema>.<layer>_<name>`.

| layer | written how |
|---|---|
| bronze | insert-only MERGE on (source_file, record_no): every raw record once, as read |
| silver | insert-only MERGE on the keys (events by event_id, partitioned by event_date) |
| gold | overwritten per run, or `replaceWhere` per partition (discover_weekly by week) |
| ops | appended: lineage, ingest counts, metrics |
"""


def render_table(spec: TableSpec) -> str:
    lines = [f"## {spec.full_name}", "", spec.description, ""]
    lines.append(f"- keys: {', '.join(spec.keys) or '-'}")
    lines.append(f"- partitioned by: {', '.join(spec.partition_by) or '-'}")
    lines.append(
        f"- written by: `spotrec {spec.produced_by}`"
        if " " not in spec.produced_by
        else f"- written by: {spec.produced_by}"
    )
    lines += ["", "| column | type | nullable |", "|---|---|---|"]
    for f in spec.schema.fields:
        lines.append(f"| {f.name} | {f.dataType.simpleString()} | {'yes' if f.nullable else 'no'} |")
    return "\n".join(lines) + "\n"


def render() -> str:
    return HEADER + "\n" + "\n".join(render_table(s) for s in all_tables())


if __name__ == "__main__":
    print(render(), end="")
