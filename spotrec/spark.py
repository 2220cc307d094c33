"""The only place that creates a SparkSession.

On a cluster (spark-submit, Databricks) a session already exists and is returned unchanged. Locally,
a ``local[*]`` session with Delta Lake is built: the Delta JARs come from ``SPOTREC_DELTA_JARS``
(a folder or comma-separated list of JARs, set by ``make``) or else are resolved from Maven Central
through ``spark.jars.packages``.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

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


BLAS_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libblas.so.3",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libblas.so.3",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libblas.so.3",
)
"""Where Debian/Ubuntu/RHEL put a system BLAS (``apt-get install libopenblas0``)."""


def system_blas() -> str | None:
    """The first system BLAS found, for MLlib's native BLAS (netlib's JNI wrapper), or None."""
    return next((p for p in BLAS_CANDIDATES if Path(p).exists()), None)


def netlib_options() -> str:
    """JVM flags for MLlib's BLAS (``dev.ludovic.netlib``): the system BLAS's path when one is installed.

    Without one, netlib's native loader prints ``netlib-blas: JNI_OnLoad: dlopen(libblas.so.3) failed`` on
    stderr (from C, not log4j) and MLlib uses its Java BLAS; installing a BLAS (``apt-get install
    libopenblas0``, in ``.ci/run``) is the fix and makes ALS use native BLAS.
    """
    blas = system_blas()
    if blas is not None:
        return f"-Ddev.ludovic.netlib.blas.nativeLibPath={blas} -Ddev.ludovic.netlib.lapack.nativeLibPath={blas}"
    return ""


QUIET_LOGGERS: dict[str, str] = {
    "dev.ludovic.netlib": "error",
    "org.apache.hadoop.util.NativeCodeLoader": "error",
}
"""log4j levels for known-benign JVM warnings, each with its reason:

- ``dev.ludovic.netlib``: "Failed to load implementation from ...JNIBLAS" when no system BLAS is installed;
  MLlib then uses its Java BLAS (same results, slower).
- ``NativeCodeLoader``: "Unable to load native-hadoop library": local runs do not use Hadoop's native code.
"""


def log4j_config(verbose: bool = False) -> str:
    """Write the local session's log4j2 configuration (WARN, :data:`QUIET_LOGGERS`) and return its path.

    Given to the driver JVM at launch, so even the lines Spark logs before the session exists follow it
    (and Spark's "Using Spark's default log4j profile" banner goes).
    """
    lines = [
        f"rootLogger.level = {'info' if verbose else 'warn'}",
        "rootLogger.appenderRef.stderr.ref = console",
        "appender.console.type = Console",
        "appender.console.name = console",
        "appender.console.target = SYSTEM_ERR",
        "appender.console.layout.type = PatternLayout",
        "appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex",
    ]
    if not verbose:
        for i, (name, level) in enumerate(QUIET_LOGGERS.items()):
            lines += [f"logger.quiet{i}.name = {name}", f"logger.quiet{i}.level = {level}"]
    path = Path(tempfile.gettempdir()) / f"spotrec-log4j2{'-verbose' if verbose else ''}.properties"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def delta_builder(cfg: SparkConfig, *, verbose: bool = False) -> SparkSession.Builder:
    """A local session builder with Delta Lake, UTC time and the configured resources.

    ``verbose`` keeps Spark's stage progress bars on (they are off so the steps' tables print cleanly).
    """
    log4j = f"-Dlog4j2.configurationFile={log4j_config(verbose)}"
    java_options = " ".join(o for o in ("-Duser.timezone=UTC", log4j, netlib_options()) if o)
    if cfg.master.startswith("local"):  # else Spark warns that the host name resolves to a loopback address
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Native BLAS runs inside Spark's task threads: one BLAS thread each, as Spark's MLlib guide advises.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    builder = (
        SparkSession.builder.master(cfg.master)
        .appName(cfg.app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        # Wide tables' plans (the RL feature rows) exceed the default 25 fields and Spark warns it truncated them.
        .config("spark.sql.debug.maxToStringFields", "1000")
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.default.parallelism", str(cfg.shuffle_partitions))
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "2")
        # Stage bars would interleave with the result tables the steps print; `--verbose` turns them on.
        .config("spark.ui.showConsoleProgress", "true" if verbose else "false")
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.executor.extraJavaOptions", java_options)
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


def get_spark(cfg: SparkConfig | None = None, *, verbose: bool = False) -> SparkSession:
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
    spark = delta_builder(cfg or SparkConfig(), verbose=verbose).getOrCreate()
    spark.sparkContext.setLogLevel("INFO" if verbose else "WARN")
    return spark


TASK_BYTES = 512 * 1024
"""Driver-side rows per Spark task, in pickled bytes: half of the 1000 KiB above which Spark warns that a
task is "of very large size" (such a task is shipped whole to one core with its data)."""


def local_frame(spark: SparkSession, rows: Sequence[tuple[Any, ...]], schema: str) -> DataFrame:
    """A DataFrame of rows that live on the driver (a trained model's vectors, a catalogue), split into
    enough slices that no task carries more than :data:`TASK_BYTES` of them.

    ``createDataFrame`` on a list puts the rows in ``defaultParallelism`` slices whatever their size, so a
    vocabulary's vectors become one over-sized task per core; the size per row is estimated from a sample.
    """
    sample = list(rows[:256])
    per_row = len(pickle.dumps(sample)) / max(1, len(sample))
    slices = max(1, spark.sparkContext.defaultParallelism, math.ceil(len(rows) * per_row / TASK_BYTES))
    return spark.createDataFrame(spark.sparkContext.parallelize(rows, min(slices, max(1, len(rows)))), schema)
