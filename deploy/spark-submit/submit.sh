#!/usr/bin/env bash
# Submit one spotrec step (or the whole pipeline) to a Spark cluster with every flag it needs.
#
#   deploy/spark-submit/submit.sh STEP [spotrec options...]
#   deploy/spark-submit/submit.sh pipeline --config conf/prod.yaml --set storage.root=s3a://bucket/spotrec
#
# STEP is a jobs/<STEP>.py entry point (generate, ingest, matrix, pipeline, ...); the options after it
# go to `spotrec STEP` unchanged (--config FILE, --set key=value, --source ...).
#
# Environment (defaults in brackets):
#   SPARK_MASTER            spark://host:7077 | yarn | k8s://https://host:443 | local[*]   (required)
#   SPOTREC_DEPLOY_MODE     client | cluster                                                [client]
#   SPOTREC_PY_FILES        the spotrec wheel or a zip of the spotrec package   [newest dist/spotrec-*.whl]
#   SPOTREC_DELTA_JARS      folder of (or comma-separated) Delta JARs, shipped with --jars; when unset,
#                           --packages io.delta:delta-spark_4.2_2.13:4.4.0 resolves them from Maven
#   SPOTREC_PYTHON          Python on the executors (needs numpy, pandas, pyarrow...)    [python3]
#   SPOTREC_DRIVER_MEMORY   [4g]     SPOTREC_EXECUTOR_MEMORY [4g]     SPOTREC_EXECUTOR_CORES [2]
#   SPOTREC_TOTAL_CORES     cap on the cores of this application (standalone)            [unset: all]
#   SPOTREC_JOB_FILE        a different driver script than jobs/STEP.py                  [unset]
#   SPOTREC_SUBMIT_ARGS     extra spark-submit arguments, word-split (e.g. "--conf spark.x=y")
#   SPARK_SUBMIT            the spark-submit to use                         [spark-submit on PATH]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
delta_package="io.delta:delta-spark_4.2_2.13:4.4.0"

if [ $# -lt 1 ]; then
  sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 64
fi
step="$1"
shift
: "${SPARK_MASTER:?set SPARK_MASTER (spark://host:7077, yarn, k8s://https://host:443 or local[*])}"

job="${SPOTREC_JOB_FILE:-$here/jobs/$step.py}"
[ -f "$job" ] || { echo "submit.sh: no entry point $job (steps: $(cd "$here/jobs" && ls *.py | sed 's/\.py$//' | xargs))" >&2; exit 64; }

py_files="${SPOTREC_PY_FILES:-$(ls -t "$here"/dist/spotrec-*.whl 2>/dev/null | head -1 || true)}"
[ -n "$py_files" ] && [ -f "$py_files" ] || {
  echo "submit.sh: no spotrec wheel: run deploy/spark-submit/build-wheel.sh or set SPOTREC_PY_FILES" >&2
  exit 66
}
# Python adds --py-files entries to sys.path only when they end in .zip/.egg/.jar; a (pure) wheel is a
# zip, so ship it under a .zip name.
if [[ "$py_files" == *.whl ]]; then
  staged="$(mktemp -d)/spotrec.zip"
  cp "$py_files" "$staged"
  py_files="$staged"
fi

delta_args=(--packages "$delta_package")
if [ -n "${SPOTREC_DELTA_JARS:-}" ]; then
  if [ -d "$SPOTREC_DELTA_JARS" ]; then
    jars="$(ls "$SPOTREC_DELTA_JARS"/*.jar | paste -sd, -)"
  else
    jars="$SPOTREC_DELTA_JARS"
  fi
  delta_args=(--jars "$jars")
fi

python="${SPOTREC_PYTHON:-python3}"
extra=()
[ -n "${SPOTREC_TOTAL_CORES:-}" ] && extra+=(--total-executor-cores "$SPOTREC_TOTAL_CORES")
# shellcheck disable=SC2206  # word splitting of the extra arguments is intended
[ -n "${SPOTREC_SUBMIT_ARGS:-}" ] && extra+=(${SPOTREC_SUBMIT_ARGS})

# Under spark-submit, spotrec.spark.get_spark keeps the launcher's master, JARs and resources.
exec "${SPARK_SUBMIT:-spark-submit}" \
  --master "$SPARK_MASTER" \
  --deploy-mode "${SPOTREC_DEPLOY_MODE:-client}" \
  --name "spotrec-$step" \
  --py-files "$py_files" \
  "${delta_args[@]}" \
  --driver-memory "${SPOTREC_DRIVER_MEMORY:-4g}" \
  --executor-memory "${SPOTREC_EXECUTOR_MEMORY:-4g}" \
  --executor-cores "${SPOTREC_EXECUTOR_CORES:-2}" \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  --conf spark.sql.session.timeZone=UTC \
  --conf spark.driver.extraJavaOptions=-Duser.timezone=UTC \
  --conf spark.executor.extraJavaOptions=-Duser.timezone=UTC \
  --conf spark.sql.execution.arrow.pyspark.enabled=true \
  --conf spark.pyspark.python="$python" \
  --conf spark.task.maxFailures=4 \
  --conf spark.stage.maxConsecutiveAttempts=4 \
  --conf spark.ui.showConsoleProgress=false \
  ${extra[@]+"${extra[@]}"} \
  "$job" "$@"
