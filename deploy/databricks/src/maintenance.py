"""Entry point: OPTIMIZE + VACUUM every spotrec table (see ``spotrec.maintenance.run_maintenance``).

Runs as a Databricks ``spark_python_task`` (the maintenance job of this bundle) and with spark-submit::

    SPOTREC_JOB_FILE=deploy/databricks/src/maintenance.py deploy/spark-submit/submit.sh maintenance \\
        --config conf/prod.yaml --retain-hours 168

Options: ``--config FILE``, ``--set key=value`` (as for ``spotrec``), ``--retain-hours H`` (default 168).
"""

from __future__ import annotations

import argparse
import logging
import sys

from spotrec.config import load_config
from spotrec.maintenance import DEFAULT_RETAIN_HOURS, run_maintenance
from spotrec.spark import get_spark
from spotrec.tables import Storage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spotrec-maintenance", description=__doc__)
    parser.add_argument("--config", "-c", default=None, help="YAML config file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--retain-hours", type=float, default=DEFAULT_RETAIN_HOURS)
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.set)
    spark = get_spark(cfg.spark)
    done = run_maintenance(spark, Storage(spark, cfg.storage), retain_hours=args.retain_hours)
    print(f"[maintenance] optimized and vacuumed {len(done)} tables: {', '.join(done)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
