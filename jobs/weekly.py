"""spark-submit entry point: `spark-submit jobs/weekly.py [--config FILE] [--set key=value ...]`."""

import sys

from spotrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["weekly", *sys.argv[1:]]))
