#!/usr/bin/env bash
# Prepares everything `make demo` and `make test` need, idempotently:
#   1. Java 17 on PATH (clear message if missing),
#   2. a Python 3.11 virtual environment with the pinned requirements, shared per machine and keyed by
#      the hash of requirements*.txt (torch is several GB: installed once per machine, not per clone),
#   3. the Delta Lake JARs in a per-machine cache, fetched from Maven Central with `mvn dependency:copy`.
# Prints the venv path on its last line so callers can use it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${SPOTREC_CACHE:-$HOME/.cache/spotrec}"
delta_jar_version="${SPOTREC_DELTA_JAR_VERSION:-4.4.0}"
scala_spark="4.2_2.13"

log() { echo "[setup] $*" >&2; }

# 1. Java 17
if ! command -v java >/dev/null 2>&1; then
  echo "[setup] ERROR: no 'java' on PATH. spotrec needs Java 17 for Spark 4.2." >&2
  echo "[setup]        Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17" >&2
  exit 1
fi
java_major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
if [ "${java_major:-0}" -lt 17 ]; then
  echo "[setup] ERROR: Java ${java_major:-unknown} found; Spark 4.2 needs Java 17 or newer. Set JAVA_HOME to a JDK 17." >&2
  exit 1
fi

# 2. Python environment
py="${SPOTREC_PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "[setup] ERROR: spotrec needs Python 3.11 ($py is $("$py" --version 2>&1)). Set SPOTREC_PYTHON." >&2
  exit 1
fi
req_hash="$(cat "$here/requirements.txt" "$here/requirements-spark.txt" "$here/requirements-dev.txt" | sha256sum | cut -c1-12)"
venv="${SPOTREC_VENV:-$cache/venv-$req_hash}"
if [ ! -f "$venv/.complete" ]; then
  log "creating $venv (first run on this machine: downloads pyspark, torch, ...; a few minutes)"
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/requirements.txt" -r "$here/requirements-spark.txt" -r "$here/requirements-dev.txt"
  touch "$venv/.complete"
else
  log "reusing $venv"
fi

# 3. Delta JARs. Maven Central has no delta-spark JAR 4.4.1 (the Python package's version) for
# Spark 4.2; 4.4.0 is the newest JAR and the Python API is unchanged between the two patch releases.
jars="$cache/jars/delta-$delta_jar_version"
if [ ! -f "$jars/.complete" ]; then
  command -v mvn >/dev/null 2>&1 || { echo "[setup] ERROR: 'mvn' is needed once to fetch the Delta JARs (apt-get install maven)." >&2; exit 1; }
  log "fetching Delta $delta_jar_version JARs into $jars"
  mkdir -p "$jars"
  for artifact in "io.delta:delta-spark_${scala_spark}:$delta_jar_version" "io.delta:delta-storage:$delta_jar_version"; do
    mvn -q -B dependency:copy -Dartifact="$artifact" -DoutputDirectory="$jars" >&2
  done
  touch "$jars/.complete"
fi
echo "$venv"
