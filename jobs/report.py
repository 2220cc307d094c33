"""spark-submit entry point: `spark-submit jobs/report.py [--config FILE] [--set key=value ...]`."""

import sys

from spotrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
