#!/usr/bin/env bash
# OPTIMIZE + VACUUM every spotrec table on a cluster (weekly, when no pipeline run is in progress).
#
#   SPARK_MASTER=spark://host:7077 deploy/spark-submit/maintenance.sh --config conf/prod.yaml [--retain-hours 168]
#
# Same environment as submit.sh; runs deploy/databricks/src/maintenance.py as the driver.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SPOTREC_JOB_FILE="$here/../databricks/src/maintenance.py" exec "$here/submit.sh" maintenance "$@"
