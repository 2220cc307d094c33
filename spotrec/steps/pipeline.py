"""``spotrec pipeline``: every step of :data:`spotrec.steps.PIPELINE` in order, then a table summary."""

from __future__ import annotations

import time

from spotrec.logs import log_context
from spotrec.steps import PIPELINE, canonical_step, run_step
from spotrec.steps.base import StepContext, StepResult
from spotrec.steps.tables import summarize_tables


def run(ctx: StepContext) -> StepResult:
    skip = {canonical_step(name) for name in ctx.option("skip", [])}
    for name in PIPELINE:
        if name in skip:
            continue
        started = time.time()
        ctx.say(f"\n=== spotrec {name} ===")
        step_ctx = StepContext(ctx.spark, ctx.storage, ctx.cfg, ctx.options, out=ctx.out)
        with log_context(step=name):
            result = run_step(name, step_ctx)
        ctx.lines.extend(result.lines)
        ctx.say(f"=== {name} done in {time.time() - started:.0f}s ===")
    ctx.say("\nTables written:\n" + summarize_tables(ctx.storage))
    return ctx.result("pipeline")
