"""Deprecated spark-submit entry point: `spotrec playlists` is now `spotrec rl` (jobs/rl.py).

Kept for one release; the CLI logs the same deprecation.
"""

import sys

from spotrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["playlists", *sys.argv[1:]]))
