"""Run bookkeeping: run ids, lineage rows in ops.runs, and the end-of-pipeline table summary."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator

from pyspark.sql import SparkSession

from spotrec.config import Config
from spotrec.logs import log_context
from spotrec.tables import RUNS, Storage, TableSpec

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
