"""Generic event files (CSV, JSON lines, Parquet) with a column mapping to the canonical fields.

``mapping`` is ``{canonical_name: source_column}``; canonical fields it does not name are null. By
default it is the identity over the canonical names the file has, which is how the synthetic world's
Parquet files (written with canonical column names) are read. A mapping must name a user, a time and
a track (``track_id``, or ``artist_name`` and ``track_name``, from which the name-based id is made).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping

from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.errors import ConfigError, ReaderFormatError
from spotrec.sources.frames import (
    CANONICAL_FIELDS,
    empty_events,
    format_utc,
    iso_utc,
    name_track_id,
    reader_frame,
    utc_wall_clock,
)
from spotrec.sources.json_records import JSON_MAP, check_json_heads
from spotrec.sources.text import LINE, LOG, FileHead, Layout, blank_to_null, header_mapped, nonblank, numbered_lines

GENERIC_CSV = "generic_csv"
GENERIC_JSONL = "generic_jsonl"
GENERIC_PARQUET = "generic_parquet"


def resolve_mapping(
    reader: str, mapping: Mapping[str, str] | None, available: Collection[str], where: str, line_no: int | None
) -> dict[str, str]:
    """Check a column mapping against the columns a file has; default: identity over canonical names.

    Raises:
        ConfigError: the mapping names a field that is not canonical.
        ReaderFormatError: a mapped source column is absent, or no user, time or track is mapped.
    """
    if mapping is None:
        resolved = {c: c for c in CANONICAL_FIELDS if c in available}
    else:
        unknown = sorted(set(mapping) - set(CANONICAL_FIELDS))
        if unknown:
            raise ConfigError(f"{reader}: mapping keys {unknown} are not canonical fields {list(CANONICAL_FIELDS)}")
        resolved = dict(mapping)
        absent = sorted(src for src in resolved.values() if src not in available)
        if absent:
            raise ReaderFormatError(reader, where, line_no, f"mapped column(s) {absent} not in {sorted(available)}")
    has_track = C.TRACK_ID in resolved or (C.ARTIST_NAME in resolved and C.TRACK_NAME in resolved)
    if C.USER_ID not in resolved or C.TS not in resolved or not has_track:
        raise ReaderFormatError(
            reader,
            where,
            line_no,
            f"needs columns for user_id, ts and track_id (or artist_name + track_name); mapped {sorted(resolved)} "
            f"from {sorted(available)}",
        )
    return resolved


def _canonical_fields(
    values: Mapping[str, Column], mapped: Collection[str], *, ts_is_text: bool = True
) -> dict[str, Column]:
    """Canonical field expressions: the mapped values, text ``ts`` normalised, a name-based id if no track id."""
    fields = {c: values[c] for c in mapped}
    if C.TS in fields and ts_is_text:
        fields[C.TS] = iso_utc(fields[C.TS])
    if C.TRACK_ID not in mapped:
        fields[C.TRACK_ID] = name_track_id(values[C.ARTIST_NAME], values[C.TRACK_NAME])
    return fields


def read_generic_csv(
    spark: SparkSession,
    path: str,
    *,
    mapping: Mapping[str, str] | None = None,
    delimiter: str = ",",
    source: str = GENERIC_CSV,
) -> DataFrame:
    """Read headed CSV (or other delimited) files with a column mapping into READER_SCHEMA.

    Args:
        spark: the session.
        path: a file, folder or glob of delimited files, each with a header line.
        mapping: ``{canonical_name: source_column}``; default identity over canonical names present.
        delimiter: the field delimiter (CSV quoting applies).
        source: the value of the ``source`` column (e.g. ``synthetic``).

    Returns:
        One row per data line; empty fields are null; a line with a different field count than its
        header comes back with only ``raw`` set.

    Raises:
        ReaderFormatError: a header lacks a mapped column or any user / time / track column.
    """
    numbered = numbered_lines(spark, path, GENERIC_CSV)
    if not numbered.heads:
        return empty_events(spark)
    mapped: dict[str, str] = {}

    def layout(head: FileHead, header: list[str]) -> Layout:
        resolved = resolve_mapping(GENERIC_CSV, mapping, header, head.source_file, head.record_no)
        mapped.update(resolved)
        return Layout({c: header.index(src) + 1 for c, src in resolved.items()}, (len(header),))

    df = header_mapped(spark, numbered, layout, CANONICAL_FIELDS, delimiter=delimiter, quoted=True)
    values = {c: blank_to_null(F.col(c)) for c in CANONICAL_FIELDS}
    return reader_frame(df, source=source, raw=F.col(C.RAW), ok=F.col("ok"), fields=_canonical_fields(values, mapped))


def read_generic_jsonl(
    spark: SparkSession, path: str, *, mapping: Mapping[str, str] | None = None, source: str = GENERIC_JSONL
) -> DataFrame:
    """Read JSON-lines files (one object per line) with a column mapping into READER_SCHEMA.

    Args:
        spark: the session.
        path: a file, folder or glob of JSON-lines files.
        mapping: ``{canonical_name: key}``; default identity over canonical keys of the first record.
        source: the value of the ``source`` column.

    Returns:
        One row per non-blank line; values are the JSON values as text (a number as its digits); a
        line that is not a JSON object comes back with only ``raw`` set.

    Raises:
        ReaderFormatError: a file's first record is not a JSON object with the mapped keys.
    """
    numbered = numbered_lines(spark, path, GENERIC_JSONL)
    if not numbered.heads:
        return empty_events(spark)
    check_json_heads(GENERIC_JSONL, numbered.heads, lambda _record: None)  # each file starts with an object
    mapped: dict[str, str] = {}
    for head in numbered.heads.values():
        first = json.loads(head.text)
        mapped.update(resolve_mapping(GENERIC_JSONL, mapping, list(first), head.source_file, head.record_no))
    df = numbered.lines.where(nonblank(LINE)).withColumn("_m", F.from_json(LINE, JSON_MAP))
    values = {c: blank_to_null(F.col("_m").getItem(src)) for c, src in mapped.items()}
    return reader_frame(
        df,
        source=source,
        raw=F.col(LINE),
        ok=F.col("_m").isNotNull(),
        fields=_canonical_fields(values, mapped),
    )


def as_text(col: Column, data_type: T.DataType) -> Column:
    """A typed column as the text a reader returns; instants as ISO-8601 UTC."""
    if isinstance(data_type, T.TimestampType):
        return format_utc(utc_wall_clock(col))
    if isinstance(data_type, T.TimestampNTZType):
        return format_utc(col)  # a wall clock without zone: taken as UTC, like text without zone
    return col.cast("string")


def read_generic_parquet(
    spark: SparkSession, path: str, *, mapping: Mapping[str, str] | None = None, source: str = GENERIC_PARQUET
) -> DataFrame:
    """Read Parquet files with a column mapping into READER_SCHEMA.

    Args:
        spark: the session.
        path: a file, folder or glob of Parquet files.
        mapping: ``{canonical_name: column}``; default identity over the canonical columns present.
        source: the value of the ``source`` column (``synthetic`` for the synthetic world).

    Returns:
        One row per Parquet row: ``record_no`` = row index in its file + 1, ``raw`` = the original
        row as JSON (timestamps with their offset), values as text, ``ts`` as ISO-8601 UTC.

    Raises:
        ReaderFormatError: no file matches, a file is not Parquet, or the schema lacks mapped columns.
    """
    try:
        df = spark.read.parquet(path)
    except AnalysisException as exc:
        text = str(exc)
        if "PATH_NOT_FOUND" in text:
            raise ReaderFormatError(GENERIC_PARQUET, path, None, "no file matches this path") from exc
        if "UNABLE_TO_INFER_SCHEMA" in text:
            LOG.warning("%s: no records in %s (empty folder)", GENERIC_PARQUET, path)
            return empty_events(spark)
        raise
    except Py4JJavaError as exc:  # Spark reports a non-Parquet file as a bare SparkException
        if "CANNOT_READ_FILE_FOOTER" in str(exc):
            raise ReaderFormatError(
                GENERIC_PARQUET, path, None, "not a Parquet file (its footer cannot be read)"
            ) from exc
        raise
    original = df.columns
    mapped = resolve_mapping(GENERIC_PARQUET, mapping, original, path, None)
    types = {f.name: f.dataType for f in df.schema.fields}
    with_meta = df.select(
        *original,
        F.col("_metadata.file_path").alias(C.SOURCE_FILE),
        (F.col("_metadata.row_index") + 1).alias(C.RECORD_NO),
    )
    values = {c: as_text(F.col(src), types[src]) for c, src in mapped.items()}
    fields = _canonical_fields(values, mapped, ts_is_text=isinstance(types[mapped[C.TS]], T.StringType))
    raw = F.to_json(F.struct(*[F.col(c) for c in original]), {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"})
    return reader_frame(with_meta, source=source, raw=raw, fields=fields)
