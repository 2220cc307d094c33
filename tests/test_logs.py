"""Structured logs: one JSON object per line with ts, level, logger, message, run_id and step.

The formatter and the context are tested on hand-made records; the CLI end to end: ``--log-format json``
(and ``logging.format: json`` in the config) turns every Python log line of a step into JSON whose
``run_id`` is the step's ``ops.runs`` key, errors included; text stays the default.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from spotrec import cli
from spotrec.config import Config, load_config
from spotrec.logs import JsonFormatter, configure_logging, current_context, log_context, remove_handlers
from spotrec.storage import Storage
from spotrec.tables import DISCOVER_WEEKLY, RUNS


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    remove_handlers()


def _record(msg: str, *args: object, exc_info: object = None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("spotrec.test", logging.WARNING, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]
    record.created = dt.datetime(2026, 11, 28, 15, 30, 1, 123456, tzinfo=dt.UTC).timestamp()
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_line_has_the_fixed_fields_extras_and_exception() -> None:
    handler_stream = io.StringIO()
    handler = configure_logging("INFO", "json", stream=handler_stream)
    try:
        raise KeyError("track")
    except KeyError:
        exc = sys.exc_info()
    with log_context(run_id="r-1", step="als"):
        record = _record(
            "wrote %d rows to %s", 30, "gold.discover_weekly", exc_info=exc, rows=30, when=dt.date(2026, 1, 2)
        )
        handler.handle(record)
    line = handler_stream.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    out = json.loads(line)
    assert list(out)[:6] == ["ts", "level", "logger", "message", "run_id", "step"]
    assert out["ts"] == "2026-11-28T15:30:01.123Z"
    assert (out["level"], out["logger"], out["message"]) == (
        "WARNING",
        "spotrec.test",
        "wrote 30 rows to gold.discover_weekly",
    )
    assert (out["run_id"], out["step"]) == ("r-1", "als")
    assert out["rows"] == 30 and out["when"] == "2026-01-02"  # extra= fields; str() for what JSON cannot hold
    assert out["exception"].startswith("Traceback") and "KeyError: 'track'" in out["exception"]


def test_fields_are_null_outside_a_step_and_nested_contexts_restore() -> None:
    assert json.loads(JsonFormatter().format(_record("x")))["run_id"] is None
    with log_context(step="pipeline"):
        with log_context(step="als", run_id="r-2", ignored=None):
            assert current_context() == {"step": "als", "run_id": "r-2"}
        assert current_context() == {"step": "pipeline"}
    assert current_context() == {}


def test_text_stays_the_default_and_bad_settings_are_refused() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    logging.getLogger("spotrec.test").info("hello %s", "world")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO spotrec\.test: hello world\n", stream.getvalue())
    with pytest.raises(ValueError, match="json"):
        configure_logging("INFO", "xml")
    with pytest.raises(ValueError, match="LOUD"):
        configure_logging("LOUD")
    assert load_config(None, ["logging.format=json"]).logging.format == "json"


def _settings(config: Config) -> list[str]:
    s = config.storage
    return [f"--set=storage.{k}={getattr(s, k)}" for k in ("root", "raw_dir", "checkpoint_dir", "artifacts_dir")]


def _one_table(spark: SparkSession, storage: Storage) -> None:
    """gold.discover_weekly with two small files in one week partition (OPTIMIZE merges them into one)."""
    for user in ("u1", "u2"):
        rows = [(dt.date(2026, 11, 16), user, 1, "t1", None, 0.9, "v1")]
        storage.append(DISCOVER_WEEKLY, spark.createDataFrame(rows, DISCOVER_WEEKLY.schema))


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
@pytest.mark.parametrize("how", [["--log-format", "json"], ["--set", "logging.format=json"]])
def test_cli_step_logs_json_lines_keyed_by_its_ops_runs_row(
    spark: SparkSession, storage: Storage, config: Config, capsys: pytest.CaptureFixture[str], how: list[str]
) -> None:
    _one_table(spark, storage)

    argv = ["maintenance", *_settings(config), *how, "--log-level", "INFO", "--no-vacuum"]
    code = cli.main([*argv, "--table", "gold.discover_weekly"])

    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]  # every line is JSON
    (run,) = storage.read(RUNS).collect()
    mine = [r for r in lines if r["logger"] == "spotrec.steps.maintenance"]
    assert len(mine) == 1
    assert mine[0]["message"].startswith("maintained gold.discover_weekly: OPTIMIZE added 1 / removed 2 files")
    assert (mine[0]["run_id"], mine[0]["step"], mine[0]["level"]) == (run["run_id"], "maintenance", "INFO")
    assert all(r["step"] == "maintenance" for r in lines)


def test_cli_error_in_json_mode_is_one_json_line(config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["maintenance", *_settings(config), "--log-format", "json", "--table", "gold.nope"])
    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    out = json.loads(line)
    assert (out["level"], out["logger"], out["step"], out["run_id"]) == ("ERROR", "spotrec", "maintenance", None)
    assert out["message"].startswith("spotrec maintenance: error: unknown table(s) ['gold.nope']")


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
def test_cli_text_logs_by_default(
    spark: SparkSession, storage: Storage, config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    _one_table(spark, storage)
    argv = ["maintenance", *_settings(config), "--log-level", "INFO", "--no-vacuum"]  # default console: WARNING
    assert cli.main([*argv, "--table", "gold.discover_weekly"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"^\S+ \S+ INFO spotrec\.steps\.maintenance: maintained gold\.discover_weekly", err, re.M), err


def test_console_level_is_warning_unless_asked_for() -> None:
    from spotrec.cli import build_parser, console_level
    from spotrec.config import load_config

    def level(argv: list[str], sets: list[str] | None = None) -> str:
        return console_level(build_parser().parse_args(argv), load_config(None, sets or []))

    assert level(["tables"]) == "WARNING"  # the steps' own lines and tables only
    assert level(["tables"], ["logging.level=INFO"]) == "INFO"  # the config asked for it
    assert level(["tables", "--log-level", "ERROR"]) == "ERROR"
    assert level(["tables", "--verbose"]) == "DEBUG"
    assert level(["--verbose", "tables"]) == "DEBUG"
