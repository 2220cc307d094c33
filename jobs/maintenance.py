"""spark-submit entry point: `spark-submit jobs/maintenance.py [--config FILE] [--set key=value ...]
[--retain-hours H] [--zorder TABLE=COL,...] [--table LAYER.NAME ...] [--no-vacuum]`."""

import sys

from spotrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintenance", *sys.argv[1:]]))
