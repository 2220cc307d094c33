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
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from spotrec import cli
from spotrec.config import load_config
from spotrec.logs import remove_handlers
from spotrec.steps import PIPELINE
from spotrec.steps.tables import log_summary

EVENTS_PER_USER = 135.0
"""Listening events per generated user in the demo world (140k events / 1,000 users over 6 weeks)."""


@dataclass
class Peaks:
    """Peak resident memory (GiB) over one step, sampled every 0.2 s."""

    driver: float = 0.0
    """This Python process: the driver's numpy / torch work (user model, agent, RNN training)."""
    jvm: float = 0.0
    """The Spark JVM: in ``local[*]`` the driver and the executor in one process."""
    workers: float = 0.0
    """The Python workers of UDFs / ``mapInPandas`` (summed over those alive at once)."""


class MemorySampler:
    """Samples the resident memory of this process, its JVM child and the Python workers under it."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.peaks = interval, Peaks()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self.peaks

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        me = psutil.Process()
        gib = float(1 << 30)
        while not self._stop.is_set():
            try:
                jvm = workers = 0.0
                for child in me.children(recursive=True):
                    rss = child.memory_info().rss / gib
                    if "java" in child.name():
                        jvm += rss
                    elif "python" in child.name():
                        workers += rss
                p = self.peaks
                p.driver = max(p.driver, me.memory_info().rss / gib)
                p.jvm, p.workers = max(p.jvm, jvm), max(p.workers, workers)
            except psutil.Error:  # a worker exited between listing and reading it
                pass
            self._stop.wait(self.interval)


def run_size(
    events: float, root: Path, steps: list[str], config: str, extra: list[str]
) -> list[tuple[str, float, Peaks]]:
    """Run ``steps`` for one world size; returns (step, seconds, peak memory) in order."""
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
    out: list[tuple[str, float, Peaks]] = []
    for step in steps:
        start = time.perf_counter()
        with MemorySampler() as peaks:
            code = cli.main([step, *args])
        remove_handlers()
        if code != 0:
            raise SystemExit(f"step {step} failed (exit {code}) at {events:,.0f} events")
        seconds = time.perf_counter() - start
        print(
            f"{events:>12,.0f} target  {step:10} {seconds:8.1f} s  peak GiB driver {peaks.driver:.2f} "
            f"jvm {peaks.jvm:.2f} workers {peaks.workers:.2f}",
            flush=True,
        )
        out.append((step, seconds, peaks))
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

    rows: list[tuple[int, str, float, Peaks]] = []
    for target in a.events:
        root = a.root / f"{int(target)}"
        timings = run_size(target, root, a.steps, a.config, a.set)
        summary = log_summary(Path(root / "warehouse" / "silver" / "listen_events"))
        n = summary[0] if summary else int(target)
        rows += [(n, step, s, m) for step, s, m in timings]
        total = sum(s for _, s, _ in timings)
        print(f"{n:>12,} events  {'total':10} {total:8.1f} s", flush=True)

    smallest = min(r[0] for r in rows)
    base = {step: s / n for n, step, s, _ in rows if n == smallest}
    print(f"\n{cores} cores, steps: {' '.join(a.steps)}")
    print(
        "| events | step | seconds | events/s per core | cost per event vs smallest "
        "| peak driver GiB | peak JVM GiB | peak workers GiB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n, step, s, m in rows:
        rel = (s / n) / base[step] if base.get(step) else float("nan")
        print(
            f"| {n:,} | {step} | {s:.1f} | {n / s / cores:,.0f} | {rel:.2f}x "
            f"| {m.driver:.2f} | {m.jvm:.2f} | {m.workers:.2f} |"
        )


def _cores(master: str) -> int:
    inside = master[master.find("[") + 1 : master.find("]")] if "[" in master else "1"
    return (os.cpu_count() or 1) if inside == "*" else int(inside)


if __name__ == "__main__":
    main()
