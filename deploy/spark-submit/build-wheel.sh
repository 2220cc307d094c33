#!/usr/bin/env bash
# Build the spotrec wheel into dist/ (what submit.sh ships with --py-files and the Databricks bundle
# installs). Prints the wheel's path on its last line.
#
#   deploy/spark-submit/build-wheel.sh            # uses python3 on PATH (needs pip + setuptools)
#   PYTHON=.venv/bin/python deploy/spark-submit/build-wheel.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python3}"
cd "$here"
rm -rf build/ ./*.egg-info
"$python" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist . >&2
ls -t dist/spotrec-*.whl | head -1
