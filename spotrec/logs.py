"""Log records as plain text (the laptop) or as one JSON object per line (cluster log collectors).

``spotrec --log-format json <step>`` (or ``logging.format: json`` in the config) makes every log record
of the driver one line such as::

    {"ts": "2026-11-28T15:30:01.123Z", "level": "INFO", "logger": "spotrec.steps.maintenance",
     "message": "maintained silver.listen_events: ...", "run_id": "20261128T153000-maintenance-1a2b3c",
     "step": "maintenance"}

so Databricks / Kubernetes / Fluent Bit / Loki can parse the driver's stderr without a regex and join a
line to its ``ops.runs`` row by ``run_id``. ``run_id`` and ``step`` come from :func:`log_context`, which
``spotrec.steps.base.tracked_run`` and the CLI enter around every step; outside a step they are ``null``.

Only Python log records are covered: the summaries the CLI prints to stdout stay human text, and the
JVM's own log4j output is configured separately (``docs/operations.md``).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any, TextIO

FORMATS = ("text", "json")
"""Accepted values of ``--log-format`` / ``logging.format``."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The laptop format (unchanged from before JSON logs existed)."""

CONTEXT_FIELDS = ("run_id", "step")
"""Fields every JSON line carries, ``null`` when unset."""

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("spotrec_log_context", default={})  # noqa: B039


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Attach ``fields`` (e.g. ``run_id``, ``step``) to every record logged inside the block.

    Nested blocks add to (and may override) the outer fields; leaving a block restores them. ``None``
    values are ignored, so callers can pass optional fields unconditionally.
    """
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    """The fields :func:`log_context` has bound at this point (a copy)."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copies the :func:`log_context` fields onto each record (as attributes), so formatters can use them."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _context.get()
        for name in CONTEXT_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, bound.get(name))
        for name, value in bound.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


# Attributes every LogRecord has; anything else on a record came from `extra=` or the context.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601, ms), ``level``, ``logger``, ``message``,
    ``run_id``, ``step``, then any ``extra=`` fields and ``exception`` (the formatted traceback) when
    the record carries one. Values that JSON cannot hold are written with ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            out[name] = getattr(record, name, None)
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRS and name not in out:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


class _SpotrecHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler :func:`configure_logging` installed, so a second call replaces it."""


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (default: the current ``sys.stderr``) as text or JSON lines.

    Replaces the handler a previous call (or ``logging.basicConfig``) put on the root logger, so the CLI
    can configure logging before it has read the config and again after; other handlers (a test
    runner's capture handler, a notebook's) are left in place. py4j's chatty DEBUG/INFO
    records are kept at WARNING.

    Args:
        level: a logging level name (``DEBUG``, ``INFO``, ...), case-insensitive.
        fmt: ``text`` (human, the default) or ``json`` (one object per line, see :class:`JsonFormatter`).
        stream: where to write.

    Returns:
        The installed handler.

    Raises:
        ValueError: unknown ``fmt`` or ``level``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = _SpotrecHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if type(old) in (_SpotrecHandler, logging.StreamHandler):  # ours, or basicConfig's
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    return handler


def remove_handlers() -> None:
    """Take the handlers :func:`configure_logging` installed off the root logger (tests, notebooks)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _SpotrecHandler):
            root.removeHandler(handler)


CONSOLE_ALLOWED_WARNINGS: dict[str, str] = {
    "WARNING: Using incubator modules: jdk.incubator.vector": "printed by the JVM itself when Spark 4 enables "
    "the vector API; no log4j logger to configure",
    "No Partition Defined for Window operation": "single-partition windows, being removed at their source "
    "(issue 15); not suppressed meanwhile",
    "SparkUI' could not bind on port": "another Spark application on the machine holds the UI port; Spark takes "
    "the next one (seen on shared CI machines only)",
}
"""The only WARN lines a quiet ``spotrec`` run may print (substring -> why it is accepted); everything else is
fixed where it starts (``spotrec.spark`` sets log4j, ships each file once, finds the system BLAS).
``tests/test_console.py`` fails on any other warning."""


def unexpected_warnings(console: str) -> list[str]:
    """Lines of ``console`` that look like a warning (log4j ``WARN``, Python ``WARNING``/``Warning:``) and match
    no entry of :data:`CONSOLE_ALLOWED_WARNINGS`."""
    flagged = []
    for line in console.splitlines():
        if not any(tag in line for tag in (" WARN ", "WARNING", "Warning:", "netlib-blas")):
            continue
        if not any(allowed in line for allowed in CONSOLE_ALLOWED_WARNINGS):
            flagged.append(line)
    return flagged
