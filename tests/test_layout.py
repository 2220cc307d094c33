"""The layout's contracts: one name per system, one home per step, no I/O or printing in library code."""

from __future__ import annotations

import ast
import importlib
import logging
from pathlib import Path

import pytest

from spotrec import cli
from spotrec.config import DEPRECATED_SECTIONS
from spotrec.steps import DEPRECATED_STEPS, PIPELINE, STEPS, canonical_step
from spotrec.tables import RUNS, all_tables

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("weekly", "rnn", "rl", "evaluation", "features", "ingest", "synth", "sources", "report")


def test_every_table_is_produced_by_a_real_step_that_names_it() -> None:
    import spotrec.tables as tables

    names = {id(v): k for k, v in vars(tables).items() if v in all_tables()}
    for spec in all_tables():
        assert spec.produced_by in STEPS, f"{spec.full_name}: produced_by {spec.produced_by!r} is not a CLI step"
        if spec is RUNS:  # every step writes its ops.runs row through spotrec.steps.base
            continue
        source = (ROOT / "spotrec" / "steps" / f"{spec.produced_by}.py").read_text()
        assert names[id(spec)] in source, f"{spec.full_name} is not written by spotrec/steps/{spec.produced_by}.py"


def test_every_step_is_a_module_with_run_and_a_job() -> None:
    for name in STEPS:
        module = importlib.import_module(f"spotrec.steps.{name}")
        assert callable(module.run), name
        assert f'main(["{name}", *sys.argv[1:]])' in (ROOT / "jobs" / f"{name}.py").read_text()
    assert set(PIPELINE) <= set(STEPS)


def test_one_name_per_system_across_package_step_and_config_section() -> None:
    from spotrec.config import Config

    for system in ("weekly", "rnn", "rl"):
        assert (ROOT / "spotrec" / system / "__init__.py").is_file()
        assert system in STEPS and system in PIPELINE
        assert system in Config.model_fields
    assert set(DEPRECATED_STEPS.values()) == {"weekly", "rnn", "rl"}
    assert set(DEPRECATED_SECTIONS.values()) == {"weekly", "rnn", "rl"}


@pytest.mark.parametrize(("old", "new"), sorted(DEPRECATED_STEPS.items()))
def test_old_step_names_work_for_one_release_with_a_deprecation_message(
    old: str, new: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="spotrec"):
        assert canonical_step(old) == new
    assert f"`spotrec {old}` is deprecated" in caplog.text and f"use `spotrec {new}`" in caplog.text
    assert cli.build_parser().parse_args([old]).step == old
    assert cli.build_parser().parse_args(["pipeline", "--skip", old]).skip == [old]


def test_unknown_step_fails_with_the_list_of_steps() -> None:
    from spotrec.errors import SpotrecError

    with pytest.raises(SpotrecError, match="unknown step 'discover'; steps: generate, ingest"):
        canonical_step("discover")


def _prints(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]


def test_library_code_does_not_print() -> None:
    """Steps report lines through ``ctx.say``; library code logs (or returns what to show)."""
    found = {
        str(path.relative_to(ROOT)): lines
        for package in LIBRARY
        for path in sorted((ROOT / "spotrec" / package).rglob("*.py"))
        if (lines := _prints(path))
    }
    assert not found, f"print() in library code: {found}"
