"""The whole pipeline at several sizes: seconds and events/s per core, one row per (size, step).

Each size is a generated world of ``events / events_per_user`` users on ``conf/demo.yaml`` (the demo makes
~135 events per user over 6 weeks), run step by step through ``spotrec.cli.main`` in one process (one Spark
session for every step and size) into its own folder under ``--root``. Events are the rows of
``silver.listen_events`` after ingest (read from the Delta log). Cost per event should stay flat across
sizes; the last column is each step's seconds per million events relative to the smallest size.

Run alone on a quiet machine, e.g.:

    PYTHONPATH=. python benchmarks/scale_bench.py --events 1e6 5e6 10e6 --root /tmp/scale
    PYTHONPATH=. python benchmarks/scale_bench.py --events 2e4 --steps generate ingest matrix   # smoke test
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from spotrec import cli
from spotrec.config import load_config
from spotrec.logs import remove_handlers
from spotrec.steps import PIPELINE
from spotrec.steps.tables import log_summary

EVENTS_PER_USER = 135.0
"""Listening events per generated user in the demo world (140k events / 1,000 users over 6 weeks)."""


def run_size(events: float, root: Path, steps: list[str], config: str, extra: list[str]) -> list[tuple[str, float]]:
    """Run ``steps`` for one world size; returns (step, seconds) in order."""
    if root.exists():
        shutil.rmtree(root)
    users = max(10, round(events / EVENTS_PER_USER))
    settings = [
        f"generate.users={users}",
        f"storage.root={root / 'warehouse'}",
        f"storage.raw_dir={root / 'raw'}",
        f"storage.checkpoint_dir={root / 'checkpoints'}",
        f"storage.artifacts_dir={root / 'artifacts'}",
        *extra,
    ]
    args = ["--config", config, *(a for s in settings for a in ("--set", s))]
    out: list[tuple[str, float]] = []
    for step in steps:
        start = time.perf_counter()
        code = cli.main([step, *args])
        remove_handlers()
        if code != 0:
            raise SystemExit(f"step {step} failed (exit {code}) at {events:,.0f} events")
        out.append((step, time.perf_counter() - start))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=float, nargs="+", default=[1e6, 5e6, 10e6], help="target events per size")
    p.add_argument("--steps", nargs="+", default=list(PIPELINE), choices=PIPELINE)
    p.add_argument("--root", type=Path, default=Path("/tmp/spotrec-scale"))
    p.add_argument("--config", default="conf/demo.yaml")
    p.add_argument("--set", action="append", default=[], help="extra config overrides for every size")
    a = p.parse_args()
    cfg = load_config(a.config, a.set)
    cores = _cores(cfg.spark.master)

    rows: list[tuple[int, str, float]] = []
    for target in a.events:
        root = a.root / f"{int(target)}"
        timings = run_size(target, root, a.steps, a.config, a.set)
        summary = log_summary(Path(root / "warehouse" / "silver" / "listen_events"))
        n = summary[0] if summary else int(target)
        rows += [(n, step, s) for step, s in timings]
        for step, s in timings:
            print(f"{n:>12,} events  {step:10} {s:8.1f} s", flush=True)

    smallest = min(r[0] for r in rows)
    base = {step: s / n for n, step, s in rows if n == smallest}
    print(f"\n{cores} cores, steps: {' '.join(a.steps)}")
    print("| events | step | seconds | events/s per core | cost per event vs smallest |")
    print("|---:|---|---:|---:|---:|")
    for n, step, s in rows:
        rel = (s / n) / base[step] if base.get(step) else float("nan")
        print(f"| {n:,} | {step} | {s:.1f} | {n / s / cores:,.0f} | {rel:.2f}x |")


def _cores(master: str) -> int:
    inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
    return (os.cpu_count() or 1) if inside == "*" else int(inside)


if __name__ == "__main__":
    main()
