#!/usr/bin/env bash
# OPTIMIZE + VACUUM every spotrec table on a cluster (weekly, when no pipeline run is in progress).
#
#   SPARK_MASTER=spark://host:7077 deploy/spark-submit/maintenance.sh --config conf/prod.yaml \
#       [--retain-hours 168] [--zorder silver.listen_events=user_id] [--table gold.discover_weekly] [--no-vacuum]
#
# Same environment as submit.sh; runs jobs/maintenance.py (= `spotrec maintenance`) as the driver.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/submit.sh" maintenance "$@"
