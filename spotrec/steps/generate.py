"""``spotrec generate``: write the synthetic listening world (raw files + ground truth) to ``storage.raw_dir``."""

from __future__ import annotations

from spotrec.steps.base import StepContext, StepResult
from spotrec.synth.world import generate_world


def run(ctx: StepContext) -> StepResult:
    s = ctx.cfg.storage
    result = generate_world(ctx.spark, ctx.cfg.generate, s.raw_dir, s.artifacts_dir)
    ctx.say(f"[generate] {result}")
    return ctx.result("generate")
