from pathlib import Path

from spotrec.tabledocs import render

ROOT = Path(__file__).resolve().parents[1]


def test_tables_doc_is_generated_from_the_specs():
    current = (ROOT / "docs" / "tables.md").read_text()
    assert current == render(), "docs/tables.md is stale: run `python -m spotrec.tabledocs > docs/tables.md`"
