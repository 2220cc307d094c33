"""spark-submit entry point: `spark-submit jobs/matrix.py [--config FILE] [--set key=value ...]`."""

import sys

from spotrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["matrix", *sys.argv[1:]]))
