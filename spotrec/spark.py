"""The only place that creates a SparkSession.

On a cluster (spark-submit, Databricks) a session already exists and is returned unchanged. Locally,
a ``local[*]`` session with Delta Lake is built: the Delta JARs come from ``SPOTREC_DELTA_JARS``
(a folder or comma-separated list of JARs, set by ``make``) or else are resolved from Maven Central
through ``spark.jars.packages``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from spotrec.config import SparkConfig
from spotrec.errors import SpotrecError

DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"
"""Newest delta-spark JAR for Spark 4.2 on Maven Central (the Python package is 4.4.1; same API)."""


def check_java() -> None:
    """Raise a clear error when no Java 17+ is available (Spark's own error is cryptic)."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise SpotrecError(
            "Java not found: Spark 4.2 needs Java 17. Install a JDK 17 (apt-get install openjdk-17-jre-headless) "
            "or set JAVA_HOME."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        major = int(out.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        return
    if major < 17:
        raise SpotrecError(f"Java {major} found at {java}; Spark 4.2 needs Java 17 or newer (set JAVA_HOME).")


def _delta_jars() -> list[str]:
    spec = os.environ.get("SPOTREC_DELTA_JARS", "")
    if not spec:
        return []
    if Path(spec).is_dir():
        return sorted(str(p) for p in Path(spec).glob("*.jar"))
    return [s for s in spec.split(",") if s]


def delta_builder(cfg: SparkConfig) -> SparkSession.Builder:
    """A local session builder with Delta Lake, UTC time and the configured resources."""
    builder = (
        SparkSession.builder.master(cfg.master)
        .appName(cfg.app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.default.parallelism", str(cfg.shuffle_partitions))
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "2")
        .config("spark.ui.showConsoleProgress", "true")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
    )
    # Local Python workers must use this interpreter (the venv with numpy/torch), not whatever `python3`
    # is first on PATH; pyspark reads the variable when the context starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    jars = _delta_jars()
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    else:
        builder = builder.config("spark.jars.packages", DELTA_PACKAGE)
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    return builder


def launched_by_spark() -> bool:
    """True under spark-submit / Databricks: the launcher owns master, JARs and resources."""
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT") or os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def get_spark(cfg: SparkConfig | None = None) -> SparkSession:
    """Return the active session (cluster) or build a local Delta-enabled one.

    Under spark-submit no session exists yet when the job starts, but ``--master``, ``--jars`` /
    ``--packages`` and resources were given to the launcher: the session is then built with only the
    settings spotrec's semantics depend on (Delta catalog, UTC), so the launcher's flags stay in force.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if launched_by_spark():
        return (
            SparkSession.builder.config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
            .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
    check_java()
    spark = delta_builder(cfg or SparkConfig()).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
