"""Throughput of generate -> ingest -> matrix at a given event count, on this machine.

    make bench-ingest                      # 1M events
    python benchmarks/ingest_bench.py --events 1000000 3000000

Prints one table row per size: seconds and events/second for each stage, measured in one process on a
fresh storage root. Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

from spotrec.config import Config, SparkConfig, StorageConfig
from spotrec.spark import get_spark
from spotrec.steps.ingest import run_ingest
from spotrec.steps.matrix import run_matrix
from spotrec.storage import Storage
from spotrec.synth.world import generate_world
from spotrec.tables import SILVER_EVENTS

EVENTS_PER_USER = 136.0


def run_size(target_events: int, base: Config, spark) -> dict[str, float]:  # type: ignore[no-untyped-def]
    g = base.generate
    # Sessions end early when the simulated listener quits: measured ~136 events per user with the
    # default world (6 weeks, 3.5 sessions a week), so users are sized from that.
    per_user = EVENTS_PER_USER * g.weeks / 6 * g.sessions_per_user_week / 3.5
    users = max(100, int(target_events / per_user))
    root = tempfile.mkdtemp(prefix="spotrec-bench-")
    try:
        cfg = base.model_copy(
            update={
                "generate": g.model_copy(update={"users": users}),
                "storage": StorageConfig(
                    root=f"{root}/wh", raw_dir=f"{root}/raw", checkpoint_dir=f"{root}/ck", artifacts_dir=f"{root}/art"
                ),
            }
        )
        storage = Storage(spark, cfg.storage)
        t0 = time.perf_counter()
        generate_world(spark, cfg.generate, cfg.storage.raw_dir, cfg.storage.artifacts_dir)
        t1 = time.perf_counter()
        counts = run_ingest(spark, storage, cfg, "bench")
        t2 = time.perf_counter()
        run_matrix(spark, storage, cfg)
        t3 = time.perf_counter()
        events = storage.read(SILVER_EVENTS).count()
        return {
            "users": users,
            "raw_rows": counts.read,
            "events": events,
            "generate_s": t1 - t0,
            "ingest_s": t2 - t1,
            "matrix_s": t3 - t2,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    base = Config(spark=SparkConfig(shuffle_partitions=args.partitions, driver_memory="12g"))
    base = base.model_copy(update={"generate": base.generate.model_copy(update={"partitions": args.partitions})})
    spark = get_spark(base.spark)
    spark.sparkContext.setLogLevel("ERROR")
    rows = [run_size(n, base, spark) for n in args.events]
    header = (
        f"{'raw rows':>10} {'events':>10} {'users':>7} | {'generate s':>10} {'ev/s':>9} | "
        f"{'ingest s':>8} {'ev/s':>9} | {'matrix s':>8} {'ev/s':>9} | {'total ev/s':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        total = r["generate_s"] + r["ingest_s"] + r["matrix_s"]
        print(
            f"{r['raw_rows']:>10,.0f} {r['events']:>10,.0f} {r['users']:>7,.0f} | "
            f"{r['generate_s']:>10.1f} {r['raw_rows'] / r['generate_s']:>9,.0f} | "
            f"{r['ingest_s']:>8.1f} {r['raw_rows'] / r['ingest_s']:>9,.0f} | "
            f"{r['matrix_s']:>8.1f} {r['events'] / r['matrix_s']:>9,.0f} | {r['raw_rows'] / total:>10,.0f}"
        )


if __name__ == "__main__":
    main()
