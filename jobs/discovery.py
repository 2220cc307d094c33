"""Deprecated spark-submit entry point: `spotrec discovery` is now `spotrec rnn` (jobs/rnn.py).

Kept for one release; the CLI logs the same deprecation.
"""

import sys

from spotrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["discovery", *sys.argv[1:]]))
