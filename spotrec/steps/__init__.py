"""The pipeline's steps: one module per CLI step, each with ``run(ctx: StepContext) -> StepResult``.

This package is the only place where step I/O lives: a step reads its input tables, calls pure library code
(``spotrec.features``, ``spotrec.weekly``, ``spotrec.rnn``, ``spotrec.rl``, ``spotrec.evaluation``), writes
its output tables and records its ``ops.runs`` row. ``spotrec.cli`` only parses arguments and calls
:func:`run_step`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from spotrec.errors import SpotrecError
from spotrec.steps.base import StepContext, StepResult

log = logging.getLogger("spotrec")

STEPS: dict[str, str] = {
    "generate": "write the synthetic listening world to storage.raw_dir",
    "ingest": "raw files -> bronze -> silver + quarantine",
    "matrix": "silver -> gold.interactions (weighted play-count matrix)",
    "evaluate": "Discover Weekly's ALS vs baselines on a last-week split -> ops.model_metrics",
    "weekly": "Discover Weekly: implicit ALS -> factors, weekly playlists, similar tracks, taste profiles",
    "rnn": "word2vec song vectors, taste RNN, Annoy recommendations (evaluated beside ALS)",
    "rl": "user model, simulator, AH-DQN -> gold.rl_playlists (policies compared)",
    "report": "write an HTML report with plots beside the tables",
    "pipeline": "run every step in order and summarise the tables",
    "tables": "list the tables that exist with rows and versions",
    "maintenance": "OPTIMIZE + VACUUM the tables (weekly, when idle)",
}
"""Every CLI step and what it does; each is the module ``spotrec.steps.<name>``."""

PIPELINE: tuple[str, ...] = ("generate", "ingest", "matrix", "evaluate", "weekly", "rnn", "rl", "report")
"""What ``spotrec pipeline`` runs, in order."""

DEPRECATED_STEPS: dict[str, str] = {"als": "weekly", "discovery": "rnn", "playlists": "rl"}
"""Step names of spotrec 0.1 that still work for one release, and their new names."""


def canonical_step(name: str) -> str:
    """The step's current name; an old name is accepted with a deprecation message naming the new one."""
    if name in DEPRECATED_STEPS:
        new = DEPRECATED_STEPS[name]
        log.warning("`spotrec %s` is deprecated and will be removed in the next release: use `spotrec %s`", name, new)
        return new
    if name not in STEPS:
        raise SpotrecError(f"unknown step {name!r}; steps: {', '.join(STEPS)}")
    return name


def step_function(name: str) -> Callable[[StepContext], StepResult]:
    """``spotrec.steps.<name>.run``. Imported on demand: the model steps pull in torch and Annoy, which a
    ``spotrec ingest`` on a cluster driver should not pay for."""
    module = importlib.import_module(f"spotrec.steps.{canonical_step(name)}")
    return module.run  # type: ignore[no-any-return]


def run_step(name: str, ctx: StepContext) -> StepResult:
    """Run one step (by current or deprecated name) in ``ctx``."""
    return step_function(name)(ctx)


__all__ = ["DEPRECATED_STEPS", "PIPELINE", "STEPS", "StepContext", "StepResult", "canonical_step", "run_step"]
