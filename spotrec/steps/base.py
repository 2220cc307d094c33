"""What every step shares: its context, its result, and the lineage row it records in ops.runs.

A step is a module of :mod:`spotrec.steps` with ``run(ctx: StepContext) -> StepResult``: it reads its input
tables through ``ctx.storage``, calls pure library code, writes its outputs, records one ``ops.runs`` row
with :meth:`StepContext.tracked` and returns the lines the CLI shows (also printed as they happen, so a
long step shows its progress).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import Config
from spotrec.logs import log_context
from spotrec.storage import Storage
from spotrec.tables import MODEL_METRICS, RUNS, TableSpec

if TYPE_CHECKING:
    from spotrec.tracking import StepTracker

log = logging.getLogger(__name__)


def new_run_id(step: str) -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{step}-{uuid.uuid4().hex[:6]}"


def _versions(storage: Storage, specs: list[TableSpec]) -> dict[str, int]:
    out = {}
    for spec in specs:
        v = storage.version(spec)
        if v is not None:
            out[spec.full_name] = v
    return out


@contextlib.contextmanager
def tracked_run(
    spark: SparkSession,
    storage: Storage,
    cfg: Config,
    step: str,
    *,
    inputs: list[TableSpec],
    outputs: list[TableSpec],
    run_id: str | None = None,
) -> Iterator[str]:
    """Record in ops.runs which config and input versions produced which output versions.

    The row is written when the step ends, with status ``succeeded`` or ``failed`` (and the error).
    """
    run_id = run_id or new_run_id(step)
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    in_versions = _versions(storage, inputs)
    status, message = "succeeded", None
    try:
        with log_context(run_id=run_id, step=step):  # every log line of the step carries its ops.runs key
            yield run_id
    except BaseException as exc:
        status, message = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        try:
            row = (
                run_id,
                step,
                status,
                started,
                dt.datetime.now(dt.UTC).replace(tzinfo=None),
                json.dumps(cfg.to_dict(), sort_keys=True, default=str),
                in_versions,
                _versions(storage, outputs) if status == "succeeded" else {},
                message,
            )
            storage.append(RUNS, spark.createDataFrame([row], RUNS.schema))
        except Exception as exc:  # lineage must never hide the step's own error
            log.warning("could not record run %s in ops.runs: %s", run_id, exc)


def log_step_metrics(storage: Storage, tracker: StepTracker, run_id: str) -> int:
    """The ``ops.model_metrics`` rows of ``run_id`` as the MLflow run's metrics (one run's rows: small)."""
    if not storage.exists(MODEL_METRICS):
        return 0
    rows = (
        storage.read(MODEL_METRICS)
        .where(F.col(C.RUN_ID) == run_id)
        .select(C.DATASET, C.MODEL, C.METRIC, C.K, C.VALUE)
        .collect()
    )
    return tracker.log_metric_rows([tuple(r) for r in rows])


@dataclass
class StepResult:
    """What a step did: its ``ops.runs`` key and the lines it reported (the CLI's output)."""

    step: str
    run_id: str | None = None
    lines: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(self.lines)


@dataclass
class StepContext:
    """Everything a step needs: the session, table I/O, the validated config and the step's own options."""

    spark: SparkSession
    storage: Storage
    cfg: Config
    options: Mapping[str, Any] = field(default_factory=dict)
    """Step flags from the command line (e.g. ``week``, ``tune``, ``sources``); absent means the default."""
    out: Callable[[str], None] = field(default=lambda text: print(text, flush=True))
    """Where reported lines go as they happen (the CLI prints them; tests may collect them)."""
    lines: list[str] = field(default_factory=list)

    def option(self, name: str, default: Any = None) -> Any:
        value = self.options.get(name)
        return default if value is None else value

    def say(self, text: str) -> None:
        """Report a line: shown now and kept in the step's result."""
        self.lines.append(text)
        self.out(text)

    tracker: StepTracker | None = None
    """The step's MLflow run while :meth:`tracked` is open (``None`` when ``tracking.enabled`` is off)."""

    @contextlib.contextmanager
    def tracked(self, step: str, *, inputs: list[TableSpec], outputs: list[TableSpec]) -> Iterator[str]:
        """The step's ``ops.runs`` row (see :func:`tracked_run`) and its MLflow run; yields the run id.

        When the step succeeds, the ``ops.model_metrics`` rows it wrote under its run id become the MLflow
        run's metrics (:func:`spotrec.tracking.metric_key` names them).
        """
        from spotrec.tracking import step_run

        with (
            tracked_run(self.spark, self.storage, self.cfg, step, inputs=inputs, outputs=outputs) as run_id,
            step_run(self.cfg, step, run_id) as tracker,
        ):
            self.tracker = tracker
            try:
                yield run_id
                if tracker is not None:
                    log_step_metrics(self.storage, tracker, run_id)
            finally:
                self.tracker = None

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Attach a file or folder (model files, the report) to the step's MLflow run, if one is open."""
        if self.tracker is not None:
            self.tracker.log_artifact(path, artifact_path)

    def result(self, step: str, run_id: str | None = None) -> StepResult:
        return StepResult(step, run_id, list(self.lines))
