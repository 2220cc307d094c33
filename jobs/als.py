"""Deprecated spark-submit entry point: `spotrec als` is now `spotrec weekly` (jobs/weekly.py).

Kept for one release; the CLI logs the same deprecation.
"""

import sys

from spotrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["als", *sys.argv[1:]]))
