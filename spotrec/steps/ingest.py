"""``spotrec ingest``: read raw files, append them to bronze, validate and MERGE them into silver.

Every input row lands in exactly one of: silver (new event), quarantine (with a reason), "duplicate"
(its event_id is already in silver or appears earlier in the same batch), or "excluded" (a podcast or
audiobook row under ``ingest.content: music``: it stays in bronze only). The four counts are returned,
printed and logged to ``ops.ingest_log``. Given a folder or a zip, each reader takes the files its
format names and the summary lists those it skipped (:mod:`spotrec.sources.files`). All writes are
insert-only MERGEs on the table keys, so running ingest twice on the same files writes no new table
version.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.config import Config, SourceSpec
from spotrec.errors import SpotrecError
from spotrec.ingest.validate import content_kind, dedupe_events, validate_events
from spotrec.sources.files import Inputs, select_inputs
from spotrec.steps.base import StepContext, StepResult
from spotrec.storage import Storage
from spotrec.tables import (
    BRONZE_EVENTS,
    INGEST_LOG,
    PLAY_COUNTS,
    PLAYLISTS,
    QUARANTINE,
    SILVER_EVENTS,
    TRACKS,
    TableSpec,
    conform,
)

log = logging.getLogger(__name__)


@dataclass
class IngestCounts:
    """Where the rows of one ingest run went; ``read == silver_new + quarantined + duplicates + excluded``."""

    read: int = 0
    silver_new: int = 0
    quarantined: int = 0
    duplicates: int = 0
    excluded: int = 0
    excluded_by_kind: dict[str, int] = field(default_factory=dict)
    per_file: list[dict[str, object]] = field(default_factory=list)

    def add(self, other: IngestCounts) -> None:
        """Add another source's counts to these."""
        self.read += other.read
        self.silver_new += other.silver_new
        self.quarantined += other.quarantined
        self.duplicates += other.duplicates
        self.excluded += other.excluded
        for kind, n in other.excluded_by_kind.items():
            self.excluded_by_kind[kind] = self.excluded_by_kind.get(kind, 0) + n
        self.per_file.extend(other.per_file)

    def __str__(self) -> str:
        kinds = ", ".join(f"excluded: {k} {n:,}" for k, n in sorted(self.excluded_by_kind.items()))
        return (
            f"read {self.read:,} rows: {self.silver_new:,} new in silver, {self.quarantined:,} quarantined, "
            f"{self.duplicates:,} duplicates of kept events, {self.excluded:,} excluded"
            + (f" ({kinds})" if kinds else "")
        )


def synthetic_sources(raw_dir: str) -> list[SourceSpec]:
    """The sources ``spotrec generate`` writes (catalogue first, so its names win over event metadata)."""
    return [
        SourceSpec(kind="tracks", format="canonical_parquet", path=f"{raw_dir}/tracks"),
        SourceSpec(kind="playlists", format="canonical_parquet", path=f"{raw_dir}/playlists"),
        SourceSpec(kind="events", format="generic_parquet", path=f"{raw_dir}/events"),
    ]


def ingest_events(
    spark: SparkSession, storage: Storage, cfg: Config, raw: DataFrame, run_id: str, *, now: dt.datetime
) -> IngestCounts:
    """Bronze append + validation + silver/quarantine MERGE for one reader's output."""
    ingest_time = now.replace(tzinfo=None)
    bronze = (
        raw.withColumn(C.INGEST_RUN_ID, F.lit(run_id))
        .withColumn(C.INGEST_TIME, F.lit(ingest_time).cast("timestamp"))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    cached: list[DataFrame] = [bronze]
    try:
        clean, quarantine = validate_events(
            bronze,
            now=now.replace(tzinfo=None),
            future_tolerance_minutes=cfg.ingest.future_tolerance_minutes,
            max_ms_played=cfg.ingest.max_ms_played,
            source_timezone=cfg.ingest.source_timezone,
        )
        clean = clean.withColumn("_kind", content_kind(F.col(C.TRACK_ID)))
        if cfg.ingest.content == "all":
            clean = clean.withColumn("_kind", F.lit(None).cast("string"))
        clean = clean.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(clean)
        excluded_rows = clean.where(F.col("_kind").isNotNull()).groupBy(C.SOURCE_FILE, "_kind").count().collect()
        per_file_x: dict[str, int] = {}
        by_kind: dict[str, int] = {}
        for r in excluded_rows:
            per_file_x[r[0]] = per_file_x.get(r[0], 0) + r[2]
            by_kind[r[1]] = by_kind.get(r[1], 0) + r[2]
        music = clean.where(F.col("_kind").isNull()).drop("_kind")
        per_file_read = {r[0]: r[1] for r in bronze.groupBy(C.SOURCE_FILE).count().collect()}
        read = sum(per_file_read.values())
        if read == 0:
            return IngestCounts()
        storage.merge_new(BRONZE_EVENTS, bronze)

        per_file_q = {r[0]: r[1] for r in quarantine.groupBy(C.SOURCE_FILE).count().collect()}
        if per_file_q:
            storage.merge_new(QUARANTINE, quarantine)

        deduped = dedupe_events(music)
        if storage.exists(SILVER_EVENTS):
            existing = storage.read(SILVER_EVENTS).select(C.EVENT_ID, C.EVENT_DATE)
            new = deduped.join(existing, [C.EVENT_ID, C.EVENT_DATE], "left_anti")
        else:
            new = deduped
        new = new.persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(new)
        per_file_new = {r[0]: r[1] for r in new.groupBy(C.SOURCE_FILE).count().collect()}
        if per_file_new:
            storage.merge_new(SILVER_EVENTS, new)
        _merge_track_names(storage, bronze if cfg.ingest.content == "all" else _music_only(bronze))

        counts = IngestCounts()
        for path, n in sorted(per_file_read.items()):
            q = per_file_q.get(path, 0)
            s = per_file_new.get(path, 0)
            x = per_file_x.get(path, 0)
            counts.per_file.append(
                {
                    "source_file": path,
                    C.ROWS_READ: n,
                    C.SILVER_NEW: s,
                    C.QUARANTINED: q,
                    C.DUPLICATES: n - q - s - x,
                    C.EXCLUDED: x,
                }
            )
        counts.read = read
        counts.quarantined = sum(per_file_q.values())
        counts.silver_new = sum(per_file_new.values())
        counts.excluded = sum(per_file_x.values())
        counts.excluded_by_kind = by_kind
        counts.duplicates = read - counts.quarantined - counts.silver_new - counts.excluded
        source = bronze.select(C.SOURCE).first()
        _log_counts(spark, storage, run_id, str(source[0]) if source else "", counts, ingest_time)
        return counts
    finally:
        # Also on the empty-input return and on errors, so a long-lived session does not keep the caches.
        for df in cached:
            df.unpersist()


def _music_only(events: DataFrame) -> DataFrame:
    """Rows whose track id is music (not a podcast episode or audiobook chapter)."""
    return events.where(content_kind(F.col(C.TRACK_ID)).isNull())


def _merge_track_names(storage: Storage, bronze: DataFrame) -> None:
    """Add tracks seen in events (with their names, when the format has them) to silver.tracks."""
    named = bronze.where(F.col(C.TRACK_ID).isNotNull() & (F.trim(C.TRACK_ID) != ""))
    tracks = (
        named.groupBy(F.trim(C.TRACK_ID).alias(C.TRACK_ID))
        .agg(
            F.min(C.TRACK_NAME).alias(C.TRACK_NAME),
            F.min(C.ARTIST_NAME).alias(C.ARTIST_NAME),
            F.min(C.ALBUM_NAME).alias(C.ALBUM_NAME),
            F.min(C.SOURCE).alias(C.SOURCE),
        )
        .withColumn(C.ARTIST_ID, artist_id_from_name(F.col(C.ARTIST_NAME)))
        .withColumn(C.ALBUM_ID, F.lit(None).cast("string"))
        .withColumn(C.DURATION_MS, F.lit(None).cast("long"))
    )
    for feature in C.AUDIO_FEATURES:
        tracks = tracks.withColumn(feature, F.lit(None).cast("double"))
    storage.merge_new(TRACKS, tracks)


def artist_id_from_name(name: F.Column) -> F.Column:
    """A stable artist id for formats that only carry names (``name:`` + 16 hex of sha1(lower(name)))."""
    return F.when(name.isNotNull(), F.concat(F.lit("name:"), F.substring(F.sha1(F.lower(F.trim(name))), 1, 16)))


def _log_counts(
    spark: SparkSession,
    storage: Storage,
    run_id: str,
    source: str,
    counts: IngestCounts,
    ingest_time: dt.datetime,
) -> None:
    rows = [
        (
            run_id,
            source,
            f["source_file"],
            f[C.ROWS_READ],
            f[C.SILVER_NEW],
            f[C.QUARANTINED],
            f[C.DUPLICATES],
            f[C.EXCLUDED],
            ingest_time,
        )
        for f in counts.per_file
    ]
    storage.append(INGEST_LOG, spark.createDataFrame(rows, INGEST_LOG.schema))


def ingest_table_rows(storage: Storage, spec: TableSpec, df: DataFrame, source: str) -> int:
    """MERGE catalogue-like rows (tracks, playlists, play counts) on their keys; returns rows read."""
    if C.SOURCE not in df.columns:
        df = df.withColumn(C.SOURCE, F.lit(source))
    for f in spec.schema.fields:
        if f.name not in df.columns:
            df = df.withColumn(f.name, F.lit(None).cast(f.dataType))
    if spec is TRACKS:
        df = df.withColumn(C.ARTIST_ID, F.coalesce(F.col(C.ARTIST_ID), artist_id_from_name(F.col(C.ARTIST_NAME))))
    conformed = conform(df, spec).dropDuplicates(list(spec.keys))
    n = conformed.count()
    if n:
        storage.merge_new(spec, conformed)
    return n


def run_ingest(
    spark: SparkSession,
    storage: Storage,
    cfg: Config,
    run_id: str,
    sources: list[SourceSpec] | None = None,
    say: Callable[[str], None] = print,
) -> IngestCounts:
    """Ingest every configured source (default: the synthetic world in ``storage.raw_dir``)."""
    from spotrec import sources as readers

    specs = sources or cfg.ingest.sources or synthetic_sources(cfg.storage.raw_dir)
    now = dt.datetime.now(dt.UTC)
    total = IngestCounts()
    for src in specs:
        log.info("ingesting %s %s from %s", src.kind, src.format, src.path)
        inputs = _inputs(cfg, src)
        if inputs.skipped:
            say(f"[ingest] {src.format} {src.path}: {inputs.summary()}")
        if src.kind == "events":
            counts = ingest_events(
                spark,
                storage,
                cfg,
                readers.read_events(spark, src.format, inputs.paths, **src.options),  # type: ignore[arg-type]
                run_id,
                now=now,
            )
            say(f"[ingest] {src.format} {src.path}: {counts}")
            total.add(counts)
        elif src.kind in ("tracks", "playlists", "play_counts"):
            spec = {"tracks": TRACKS, "playlists": PLAYLISTS, "play_counts": PLAY_COUNTS}[src.kind]
            if src.format == "canonical_parquet":
                df = spark.read.parquet(src.path)
            elif src.kind == "playlists":
                read = readers.read_playlists(spark, src.format, inputs.paths, **src.options)  # type: ignore[arg-type]
                tracks, df = read.tracks, read.playlists
                if cfg.ingest.content == "music":
                    tracks, df = _music_only(tracks), _music_only(df)
                n_tracks = ingest_table_rows(storage, TRACKS, tracks, src.source or src.format)
                say(f"[ingest] playlist tracks {src.format} {src.path}: {n_tracks:,} rows merged into silver.tracks")
            elif src.kind == "play_counts":
                df = readers.read_play_counts(spark, src.format, inputs.paths, **src.options)  # type: ignore[arg-type]
            else:
                df = readers.read_track_features(spark, src.format, src.path, **src.options)
            n = ingest_table_rows(storage, spec, df, src.source or src.format)
            say(f"[ingest] {src.kind} {src.format} {src.path}: {n:,} rows merged into {spec.full_name}")
        else:
            raise ValueError(f"unknown source kind {src.kind!r}; use events, tracks, playlists or play_counts")
    say(f"[ingest] total: {total}")
    return total


def _inputs(cfg: Config, src: SourceSpec) -> Inputs:
    """The files the source's reader takes (folders and zips as users have them; see sources.files).

    A zip is unpacked under ``storage.artifacts_dir/ingest`` when that is a local folder, else under the
    driver's temp folder (a zip is only ever read from a local path).
    """
    if src.format == "canonical_parquet":
        return Inputs(src.path)
    work = f"{cfg.storage.artifacts_dir}/ingest"
    if "://" in work or work.startswith("dbfs:"):
        work = os.path.join(tempfile.gettempdir(), "spotrec-ingest")
    return select_inputs(src.format, src.path, work_dir=work)


OUTPUTS = [BRONZE_EVENTS, SILVER_EVENTS, QUARANTINE, TRACKS, PLAYLISTS, PLAY_COUNTS, INGEST_LOG]


def parse_source(text: str) -> SourceSpec:
    """``KIND:FORMAT=PATH`` or ``FORMAT=PATH`` (kind events), as given to ``--source``."""
    if "=" not in text:
        raise SpotrecError(f"--source {text!r} must look like FORMAT=PATH or KIND:FORMAT=PATH")
    head, path = text.split("=", 1)
    kind, fmt = head.split(":", 1) if ":" in head else ("events", head)
    try:
        return SourceSpec(kind=kind, format=fmt, path=path)  # type: ignore[arg-type]
    except ValueError as exc:
        raise SpotrecError(f"--source {text!r}: kind must be events, tracks, playlists or play_counts ({exc})") from exc


def run(ctx: StepContext) -> StepResult:
    """Ingest ``--source`` inputs, else ``ingest.sources``, else the generated world."""
    sources = [parse_source(s) for s in ctx.option("sources", [])]
    with ctx.tracked("ingest", inputs=[], outputs=OUTPUTS) as run_id:
        run_ingest(ctx.spark, ctx.storage, ctx.cfg, run_id, sources or None, say=ctx.say)
    return ctx.result("ingest", run_id)
