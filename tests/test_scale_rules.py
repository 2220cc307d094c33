"""No single-core stage: a small pipeline run must not make Spark log the single-partition window warning.

A window without ``partitionBy`` moves every row to one partition; Spark's ``WindowExec`` then logs
"No Partition Defined for Window operation!" through log4j. The test session runs Spark at log level ERROR
and the JVM writes to its own stderr (which pytest's capture never sees), so the test attaches its own
log4j2 file appender, at WARN, to Spark's SQL execution loggers (not additive: the console stays quiet),
runs generate -> ingest -> matrix -> evaluate -> weekly through ``spotrec.cli.main`` on a tiny world, and
reads the file. A first, deliberate unpartitioned window proves the capture works, so the test cannot pass
because nothing was captured.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from spotrec import cli
from spotrec.logs import remove_handlers

pytestmark = pytest.mark.slow  # a five-step pipeline on a tiny world: ~1-2 min on two busy cores

WARNING = "No Partition Defined for Window operation"
LOGGER = "org.apache.spark.sql.execution"
APPENDER = "spotrec-scale-rules"

TINY_WORLD = [
    "generate.users=40",
    "generate.artists=20",
    "generate.albums_per_artist=2",
    "generate.tracks_per_album=4",
    "generate.weeks=2",
    "generate.partitions=2",
    "weekly.rank=4",
    "weekly.max_iter=2",
    "weekly.num_blocks=2",
    "weekly.user_block_size=64",
]


@pytest.fixture
def spark_warnings(spark: SparkSession, tmp_path: Path) -> Iterator[Path]:
    """A log4j2 file that receives every WARN of Spark's SQL execution loggers while the test runs."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    core = jvm.org.apache.logging.log4j.core
    level = jvm.org.apache.logging.log4j.Level
    log_file = tmp_path / "spark-warnings.log"
    context = jvm.org.apache.logging.log4j.LogManager.getContext(False)
    config = context.getConfiguration()
    layout = core.layout.PatternLayout.newBuilder().withPattern("%c %p %m%n").build()
    appender = (
        core.appender.FileAppender.newBuilder()
        .setName(APPENDER)
        .withFileName(str(log_file))
        .setLayout(layout)
        .setConfiguration(config)
        .build()
    )
    appender.start()
    config.addAppender(appender)
    logger = core.config.LoggerConfig(LOGGER, level.WARN, False)
    logger.addAppender(appender, level.WARN, None)
    config.addLogger(LOGGER, logger)
    context.updateLoggers()
    try:
        yield log_file
    finally:
        config.removeLogger(LOGGER)
        context.updateLoggers()
        appender.stop()


def _flushed(log_file: Path) -> str:
    return log_file.read_text() if log_file.exists() else ""


def test_pipeline_runs_no_window_in_a_single_partition(spark: SparkSession, spark_warnings: Path, tmp_path: Path):
    # The capture works: an unpartitioned window is reported.
    spark.range(3).withColumn("n", F.row_number().over(Window.orderBy("id"))).collect()
    assert WARNING in _flushed(spark_warnings), "the log4j capture saw no warning for a deliberate window"
    spark_warnings.write_text("")

    settings = [
        *TINY_WORLD,
        f"storage.root={tmp_path / 'warehouse'}",
        f"storage.raw_dir={tmp_path / 'raw'}",
        f"storage.checkpoint_dir={tmp_path / 'checkpoints'}",
        f"storage.artifacts_dir={tmp_path / 'artifacts'}",
    ]
    overrides = [a for s in settings for a in ("--set", s)]
    try:
        for step in ("generate", "ingest", "matrix", "evaluate", "weekly"):
            assert cli.main([step, *overrides]) == 0, step
    finally:
        remove_handlers()
    offending = [line for line in _flushed(spark_warnings).splitlines() if WARNING in line]
    assert not offending, f"{len(offending)} single-partition window(s) in the pipeline: {offending[:3]}"
