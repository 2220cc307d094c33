"""Shared machinery of the readers: numbered lines, JSON records, delimited fields, ids and timestamps.

Everything here builds Spark column expressions or runs one small aggregation whose result (one row
per file block) is collected to the driver; record data itself never leaves the executors, so a folder
of many gigabytes reads like a sample.

Line numbers. ``spark.read.text`` does not say which line of a file a row came from. We number lines
without a shuffle: inside one scan partition the rows of one file block are contiguous and
``monotonically_increasing_id`` rises by one per row, so ``id - min(id of the block)`` is the line's
position in its block; a tiny per-block aggregate (first id, line count) gives each block's offset in
its file (a file changed between the two passes, or a split size that changed with a cluster's
parallelism, is detected and fails the read: pin ``spark.sql.files.minPartitionNum`` on clusters with
dynamic allocation). The same aggregate yields each file's first non-blank line, which the readers
check on the driver to reject a file in the wrong format with a precise
:class:`~spotrec.errors.ReaderFormatError`.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.errors import ReaderFormatError
from spotrec.tables import PLAY_COUNTS, PLAYLISTS, RAW_EVENT_SCHEMA, READER_SCHEMA, TRACKS

LOG = logging.getLogger("spotrec.sources")

CANONICAL_FIELDS: tuple[str, ...] = tuple(f.name for f in RAW_EVENT_SCHEMA.fields)
"""The canonical event fields every reader fills (as strings) after the bookkeeping columns."""

LINE = "line"
TEXT = "text"
_BLOCK = "_block_start"
_MONO = "_mono"
_BLANK_RE = r"^\s*$"


@dataclass(frozen=True)
class FileHead:
    """The first non-blank record of one file: what the driver inspects to check the file's format."""

    source_file: str
    record_no: int
    text: str


@dataclass(frozen=True)
class NumberedLines:
    """The lines of a set of text files with their 1-based line numbers.

    Attributes:
        lines: ``source_file`` (the file's URI as Spark reports it), ``record_no`` (1-based line number
            in that file) and ``line`` (the text without its line end and without a UTF-8 BOM).
        heads: the first non-blank line of every file that has one, by ``source_file``, in path order.
    """

    lines: DataFrame
    heads: dict[str, FileHead]


def local_path(source_file: str) -> str:
    """The path to hand back to Spark for a ``source_file`` URI (Spark percent-encodes it)."""
    return unquote(source_file)


def path_component(source_file: Column, index: int) -> Column:
    """One component of a ``source_file`` URI (``-1`` the file name, ``-2`` its folder), decoded.

    Spark percent-encodes paths; ``+`` is protected before decoding because it is literal in a path.
    """
    part = F.element_at(F.split(source_file, "/"), index)
    return F.url_decode(F.regexp_replace(part, r"\+", "%2B"))


def read_text(spark: SparkSession, path: str | list[str], reader: str, *, wholetext: bool = False) -> DataFrame:
    """``spark.read.text`` that turns a missing path into a :class:`ReaderFormatError` naming the reader."""
    try:
        return spark.read.text(path, wholetext=wholetext)
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc):
            raise ReaderFormatError(reader, str(path), None, "no file matches this path") from exc
        raise


def numbered_lines(spark: SparkSession, path: str | list[str], reader: str) -> NumberedLines:
    """Read text files as lines numbered from 1 within each file (see the module docstring)."""
    base = read_text(spark, path, reader).select(
        F.col("_metadata.file_path").alias(C.SOURCE_FILE),
        F.col("_metadata.file_block_start").alias(_BLOCK),
        F.monotonically_increasing_id().alias(_MONO),
        F.regexp_replace("value", "^\ufeff", "").alias(LINE),
    )
    nonblank_id = F.when(~F.col(LINE).rlike(_BLANK_RE), F.col(_MONO))
    stats = (
        base.groupBy(C.SOURCE_FILE, _BLOCK)
        .agg(
            F.min(_MONO).alias("first_id"),
            F.count(F.lit(1)).alias("n"),
            F.min_by(F.struct(F.col(_MONO).alias("id"), F.col(LINE).alias("line")), nonblank_id).alias("head"),
        )
        .collect()
    )
    offsets: list[tuple[str, int, int, int, int]] = []
    heads: dict[str, FileHead] = {}
    by_file: dict[str, list[T.Row]] = {}
    for row in stats:
        by_file.setdefault(row[C.SOURCE_FILE], []).append(row)
    for source_file in sorted(by_file):
        offset = 0
        for row in sorted(by_file[source_file], key=lambda r: r[_BLOCK]):
            offsets.append((source_file, row[_BLOCK], row["first_id"], row["n"], offset))
            if source_file not in heads and row["head"] is not None:
                record_no = row["head"]["id"] - row["first_id"] + offset + 1
                heads[source_file] = FileHead(source_file, record_no, row["head"]["line"])
            offset += row["n"]
        if source_file not in heads:
            LOG.warning("%s: %s has only blank lines", reader, source_file)
    block_schema = "source_file string, _block_start long, _first_id long, _n long, _offset long"
    blocks = spark.createDataFrame(offsets, block_schema)
    in_block = F.col(_MONO) - F.col("_first_id")
    # The numbering relies on both passes splitting the files alike; if they did not (files changed, or
    # a cluster's parallelism changed the split size), fail loudly rather than misnumber.
    consistent = F.col("_first_id").isNotNull() & (in_block >= 0) & (in_block < F.col("_n"))
    record_no = F.when(
        ~consistent,
        F.raise_error(
            F.lit(
                f"{reader}: file splits changed between the numbering pass and the read; pin "
                "spark.sql.files.minPartitionNum and do not modify input files while reading"
            )
        ),
    ).otherwise(in_block + F.col("_offset") + 1)
    lines = base.join(F.broadcast(blocks), [C.SOURCE_FILE, _BLOCK], "left").select(
        C.SOURCE_FILE, record_no.cast("long").alias(C.RECORD_NO), LINE
    )
    if not heads:
        LOG.warning("%s: no records in %s (empty file or folder)", reader, path)
    return NumberedLines(lines, heads)


def field(fields: Column, index: int) -> Column:
    """The 0-based ``index``-th element of an array of fields, null when the array is shorter."""
    return F.try_element_at(fields, F.lit(index + 1))


def nonblank(col: str | Column) -> Column:
    """True where the text has a non-whitespace character."""
    c = F.col(col) if isinstance(col, str) else col
    return ~c.rlike(_BLANK_RE)


def blank_to_null(col: Column) -> Column:
    """The text, or null where it is empty or only whitespace (text formats have no other null)."""
    return F.when(col.rlike(r"\S"), col)


# -- JSON -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JsonRecords:
    """JSON records of a set of files: array elements and JSON-lines lines alike.

    Attributes:
        records: ``source_file``, ``record_no`` (element index from 1 for a JSON array file, line
            number for a JSON-lines file) and ``text`` (the record's JSON text; for an array element
            Spark's compact re-serialisation of it).
        heads: the first record of each file, for key checks on the driver.
    """

    records: DataFrame
    heads: dict[str, FileHead]


def json_records(spark: SparkSession, path: str, reader: str, *, lines: bool | None = None) -> JsonRecords:
    """Read JSON-array files (one record per element) and/or JSON-lines files (one per non-blank line).

    Args:
        spark: the session.
        path: a file, folder or glob.
        reader: the reader's name, for errors and warnings.
        lines: False: every file is a JSON array (one pass fewer: no line numbering); True: every file
            is JSON lines; None: each file's kind is taken from its first non-blank character, ``[``
            array, ``{`` JSON lines, anything else raising :class:`ReaderFormatError`.

    An array file that is not valid JSON as a whole raises (it cannot be split into records); a bad
    line in a JSON-lines file is returned as a record whose text does not parse, for ingest to
    quarantine.
    """
    if lines is False:
        return _json_arrays(spark, path, reader)
    numbered = numbered_lines(spark, path, reader)
    array_files: list[str] = []
    line_files: list[str] = []
    for source_file, head in numbered.heads.items():
        first = head.text.lstrip()
        if first.startswith("{") or (lines and first):
            line_files.append(source_file)
        elif first.startswith("["):
            array_files.append(source_file)
        else:
            raise ReaderFormatError(
                reader, source_file, head.record_no, f"expected a JSON array or JSON lines, found {first[:60]!r}"
            )
    parts: list[JsonRecords] = []
    if line_files:
        records = numbered.lines.where(F.col(C.SOURCE_FILE).isin(line_files) & nonblank(LINE))
        parts.append(
            JsonRecords(
                records.select(C.SOURCE_FILE, C.RECORD_NO, F.col(LINE).alias(TEXT)),
                {f: numbered.heads[f] for f in line_files},
            )
        )
    if array_files:
        parts.append(_json_arrays(spark, [local_path(f) for f in array_files], reader))
    if not parts:
        return JsonRecords(empty_frame(spark, "source_file string, record_no long, text string"), {})
    frame = parts[0].records
    for part in parts[1:]:
        frame = frame.unionByName(part.records)
    heads = {f: h for part in parts for f, h in part.heads.items()}
    return JsonRecords(frame, dict(sorted(heads.items())))


def _json_arrays(spark: SparkSession, path: str | list[str], reader: str) -> JsonRecords:
    """JSON-array files, one record per element (``record_no`` = index from 1); two passes in all."""
    arrays = read_text(spark, path, reader, wholetext=True).select(
        F.col("_metadata.file_path").alias(C.SOURCE_FILE),
        F.from_json("value", T.ArrayType(T.StringType())).alias("elements"),
        F.when(F.col("value").rlike(r"^\s*\["), F.lit(None)).otherwise(F.substring("value", 1, 400)).alias("start"),
    )
    checks = arrays.select(
        C.SOURCE_FILE,
        F.col("elements").isNull().alias("bad"),
        F.try_element_at("elements", F.lit(1)).alias("first"),
        "start",
    ).collect()
    heads: dict[str, FileHead] = {}
    for row in sorted(checks, key=lambda r: r[C.SOURCE_FILE]):
        start = row["start"]
        if start is not None and start.strip() == "":
            LOG.warning("%s: %s is empty", reader, row[C.SOURCE_FILE])
        elif start is not None:  # not an array: name the first non-blank line
            text_lines = start.splitlines()
            line_no = next((i for i, t in enumerate(text_lines, 1) if t.strip()), 1)
            found = text_lines[line_no - 1].strip()[:60] if text_lines else ""
            raise ReaderFormatError(reader, row[C.SOURCE_FILE], line_no, f"expected a JSON array, found {found!r}")
        elif row["bad"]:
            raise ReaderFormatError(reader, row[C.SOURCE_FILE], 1, "not a valid JSON array")
        elif row["first"] is None:
            LOG.warning("%s: %s is an empty JSON array", reader, row[C.SOURCE_FILE])
        else:
            heads[row[C.SOURCE_FILE]] = FileHead(row[C.SOURCE_FILE], 1, row["first"])
    if not heads:
        LOG.warning("%s: no records in %s (empty file or folder)", reader, path)
    # The outer variant: the plain one makes Spark infer size(elements) > 0 filters that parse the whole
    # file again per filter.
    records = (
        arrays.select(C.SOURCE_FILE, F.posexplode_outer("elements"))
        .where(F.col("pos").isNotNull())
        .select(C.SOURCE_FILE, (F.col("pos") + 1).cast("long").alias(C.RECORD_NO), F.col("col").alias(TEXT))
    )
    return JsonRecords(records, heads)


def check_json_heads(
    reader: str, heads: Mapping[str, FileHead], check: Callable[[dict[str, object]], str | None]
) -> None:
    """Raise :class:`ReaderFormatError` for the first file whose first record fails ``check``.

    ``check`` gets the record as a dict and returns what is wrong, or None when it looks right.
    """
    for head in heads.values():
        try:
            record = json.loads(head.text)
        except json.JSONDecodeError as exc:
            raise ReaderFormatError(reader, head.source_file, head.record_no, f"not JSON: {exc}") from exc
        problem = check(record) if isinstance(record, dict) else f"expected a JSON object, found {head.text[:60]!r}"
        if problem:
            raise ReaderFormatError(reader, head.source_file, head.record_no, problem)


def missing_keys(required: Iterable[str], any_of: Iterable[str] = ()) -> Callable[[dict[str, object]], str | None]:
    """A ``check`` for :func:`check_json_heads`: all of ``required`` and one of ``any_of`` must be keys."""
    required, any_of = tuple(required), tuple(any_of)

    def check(record: dict[str, object]) -> str | None:
        missing = [k for k in required if k not in record]
        if missing:
            return f"first record lacks key(s) {missing}; it has {sorted(record)[:12]}"
        if any_of and not any(k in record for k in any_of):
            return f"first record has none of the keys {list(any_of)}; it has {sorted(record)[:12]}"
        return None

    return check


JSON_MAP = "map<string,string>"
"""Records parse to ``map<string,string>``: every value stays text (a number as its digits), and a line
that is not a JSON object parses to null, which marks it malformed."""


# -- delimited text ---------------------------------------------------------------------------------


def split_fields(line: Column, delimiter: str, *, quoted: bool) -> Column:
    """Split a line into its fields (an array of strings, trailing empty fields kept).

    With ``quoted`` the split follows CSV quoting (a delimiter inside ``"..."`` does not split) and the
    quotes are removed, ``""`` becoming ``"``. Records spanning several lines are not supported: each
    line is one record, and a broken one shows up as a wrong field count.
    """
    sep = _regex_escape(delimiter)
    if not quoted:
        return F.split(line, sep, -1)
    # Split on delimiters followed by an even number of quotes (possessive: no backtracking blow-up).
    fields = F.split(line, sep + r'(?=(?:[^"]*+"[^"]*+")*+[^"]*+$)', -1)
    return F.transform(
        fields,
        lambda f: F.when(
            f.rlike(r'^\s*".*"\s*$'),
            F.regexp_replace(F.regexp_extract(f, r'^\s*"(.*)"\s*$', 1), '""', '"'),
        ).otherwise(f),
    )


def parse_header(text: str, delimiter: str) -> list[str]:
    """The column names of a header line (CSV quoting rules), stripped of blanks."""
    row = next(csv.reader([text], delimiter=delimiter), [])
    return [name.strip() for name in row]


def _regex_escape(delimiter: str) -> str:
    return "".join("\\" + ch if not ch.isalnum() else ch for ch in delimiter)


@dataclass(frozen=True)
class Layout:
    """Where a file's wanted columns are: 1-based field index by wanted name, and the accepted widths."""

    indices: dict[str, int | None]
    widths: tuple[int, ...]


def header_mapped(
    spark: SparkSession,
    numbered: NumberedLines,
    layout_for: Callable[[FileHead, list[str]], Layout],
    wanted: Iterable[str],
    *,
    delimiter: str,
    quoted: bool,
) -> DataFrame:
    """Fields of headed delimited files, located per file through each file's own header.

    Args:
        spark: the session (builds the small per-file layout table).
        numbered: the files' numbered lines; each file's first non-blank line is its header.
        layout_for: maps a file's header to its :class:`Layout` (and raises ReaderFormatError when the
            header does not fit the reader).
        wanted: the names the result carries, one column each.
        delimiter: the field delimiter.
        quoted: whether fields follow CSV quoting.

    Returns:
        ``source_file, record_no, raw`` (the line), ``ok`` (the line has an accepted number of fields)
        and one string column per wanted name (null where the file has no such column or not ok).
        Header and blank lines are not returned.
    """
    wanted = list(wanted)
    rows = []
    for head in numbered.heads.values():
        layout = layout_for(head, parse_header(head.text, delimiter))
        rows.append((head.source_file, head.record_no, list(layout.widths), *[layout.indices.get(w) for w in wanted]))
    schema = T.StructType(
        [
            T.StructField(C.SOURCE_FILE, T.StringType()),
            T.StructField("_header_no", T.LongType()),
            T.StructField("_widths", T.ArrayType(T.IntegerType())),
            *[T.StructField(f"_idx_{i}", T.IntegerType()) for i in range(len(wanted))],
        ]
    )
    layouts = spark.createDataFrame(rows, schema)
    fields = split_fields(F.col(LINE), delimiter, quoted=quoted)
    df = (
        numbered.lines.join(F.broadcast(layouts), C.SOURCE_FILE)
        .where((F.col(C.RECORD_NO) != F.col("_header_no")) & nonblank(LINE))
        .withColumn("_fields", fields)
        .withColumn("ok", F.array_contains("_widths", F.size("_fields")))
    )
    return df.select(
        C.SOURCE_FILE,
        C.RECORD_NO,
        F.col(LINE).alias(C.RAW),
        "ok",
        *[F.when(F.col("ok"), F.try_element_at("_fields", F.col(f"_idx_{i}"))).alias(w) for i, w in enumerate(wanted)],
    )


# -- ids and timestamps -----------------------------------------------------------------------------


def name_track_id(artist: Column, track: Column) -> Column:
    """A deterministic track id from names: ``name:`` + sha1 hex of lower(artist) US lower(track).

    For formats without track ids (Spotify's basic export, Last.fm rows without an MBID). Null when
    either name is missing. The same names give the same id in every source, so plays of one song
    from two exports meet.
    """
    ok = artist.isNotNull() & track.isNotNull()
    key = F.concat_ws("\x1f", F.lower(artist), F.lower(track))
    return F.when(ok, F.concat(F.lit("name:"), F.sha1(key.cast("binary"))))


def spotify_uri_id(uri: Column) -> Column:
    """The id of a Spotify URI: ``spotify:track:ID`` -> ``ID``; ``spotify:episode:ID`` -> ``episode:ID``.

    Track ids stay bare (they are what Spotify's API calls the track id); other kinds keep their kind
    as prefix so an episode can never be mistaken for a track; a local file keeps its whole URI.
    """
    kind = F.regexp_extract(uri, r"^spotify:([a-z]+):", 1)
    rest = F.regexp_extract(uri, r"^spotify:[a-z]+:(.*)$", 1)
    return (
        F.when(uri.isNull() | (F.trim(uri) == ""), F.lit(None).cast("string"))
        .when(kind == "track", rest)
        .when(kind == "local", uri)
        .when(kind != "", F.concat(kind, F.lit(":"), rest))
        .otherwise(uri)
    )


_DATE_TIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"


def utc_wall_clock(ts: Column) -> Column:
    """A TIMESTAMP (an instant) as TIMESTAMP_NTZ holding its UTC wall clock, whatever the session zone."""
    epoch = F.lit("1970-01-01 00:00:00").cast("timestamp_ntz")
    return F.timestamp_add("MICROSECOND", F.unix_micros(ts), epoch)


def format_utc(wall: Column) -> Column:
    """Format a UTC wall clock (TIMESTAMP_NTZ) as ISO-8601 ``...Z``, with microseconds only when nonzero."""
    return F.when(F.date_format(wall, "SSSSSS") == "000000", F.date_format(wall, "yyyy-MM-dd'T'HH:mm:ss'Z'")).otherwise(
        F.date_format(wall, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'")
    )


def iso_utc(ts: Column) -> Column:
    """Normalise a timestamp string to ISO-8601 UTC (``2020-01-01T13:05:00Z``) where its shape allows.

    Accepted shapes: ``yyyy-MM-dd[T ]HH:mm[:ss[.f]]`` without zone (taken as UTC: the formats that
    write it, such as Spotify's ``endTime``, are documented as UTC), the same with ``Z`` or a
    ``+hh:mm`` offset (converted to UTC), and a bare date ``yyyy-MM-dd`` (midnight UTC). Anything
    else, including shaped but impossible values, is returned unchanged for ingest to quarantine as
    unparseable.
    """
    local = ts.rlike(_DATE_TIME + "$")
    zoned = ts.rlike(_DATE_TIME + r"(Z|[+-]\d{2}(:?\d{2})?)$")
    date_only = ts.rlike(r"^\d{4}-\d{2}-\d{2}$")
    wall = (
        F.when(local | date_only, ts.try_cast("timestamp_ntz"))
        .when(zoned, utc_wall_clock(ts.try_cast("timestamp")))
        .otherwise(F.lit(None).cast("timestamp_ntz"))
    )
    return F.coalesce(format_utc(wall), ts)


# -- output frames ----------------------------------------------------------------------------------


def reader_frame(
    df: DataFrame,
    *,
    source: str,
    raw: Column,
    fields: Mapping[str, Column],
    ok: Column | None = None,
) -> DataFrame:
    """Project ``df`` (with ``source_file`` and ``record_no``) to exactly :data:`READER_SCHEMA`.

    Args:
        df: the parsed records.
        source: the reader's name, written to ``source``.
        raw: the record text kept for inspection.
        fields: canonical field name -> expression; fields not given are null.
        ok: where false the record is malformed and every canonical field is null (ingest's
            ``malformed_record``).
    """
    unknown = set(fields) - set(CANONICAL_FIELDS)
    if unknown:
        raise ValueError(f"not canonical event fields: {sorted(unknown)}")
    cols = [
        F.lit(source).alias(C.SOURCE),
        F.col(C.SOURCE_FILE).cast("string").alias(C.SOURCE_FILE),
        F.col(C.RECORD_NO).cast("long").alias(C.RECORD_NO),
        raw.cast("string").alias(C.RAW),
    ]
    for name in CANONICAL_FIELDS:
        expr = fields.get(name, F.lit(None)).cast("string")
        if ok is not None:
            expr = F.when(ok, expr)
        cols.append(expr.alias(name))
    return _with_schema(df.select(*cols), READER_SCHEMA)


_ZERO: dict[type[T.DataType], object] = {T.StringType: "", T.LongType: 0, T.IntegerType: 0}


def _with_schema(df: DataFrame, schema: T.StructType) -> DataFrame:
    """``df`` cast to ``schema``, with its nullability declared too.

    Spark marks most derived columns nullable; a non-nullable field is made so by ``coalesce`` with a
    constant, which never fires because callers filter such rows out first (no extra data pass).
    """
    cols = []
    for f in schema.fields:
        col = F.col(f.name).cast(f.dataType)
        if not f.nullable:
            col = F.coalesce(col, F.lit(_ZERO[type(f.dataType)]).cast(f.dataType))
        cols.append(col.alias(f.name))
    return df.select(*cols)


def empty_frame(spark: SparkSession, schema: T.StructType | str) -> DataFrame:
    """An empty DataFrame with ``schema``."""
    return spark.createDataFrame([], schema)


def empty_events(spark: SparkSession) -> DataFrame:
    """An empty reader output (:data:`READER_SCHEMA`)."""
    return empty_frame(spark, READER_SCHEMA)


def tracks_frame(df: DataFrame, *, source: str, fields: Mapping[str, Column]) -> DataFrame:
    """Project to :data:`TRACKS`' columns, one row per track id (rows without an id are dropped).

    Duplicate ids keep the smallest (track_name, artist_name, ...) tuple, so the choice is deterministic.
    """
    names = [f.name for f in TRACKS.schema.fields if f.name not in (C.TRACK_ID, C.SOURCE)]
    projected = df.select(
        fields[C.TRACK_ID].cast("string").alias(C.TRACK_ID),
        *[
            fields.get(n, F.lit(None)).cast(TRACKS.schema[n].dataType).alias(n)
            for n in names  # keep declared types
        ],
    ).where(F.col(C.TRACK_ID).isNotNull())
    best = projected.groupBy(C.TRACK_ID).agg(F.min(F.struct(*names)).alias("_m"))
    return _with_schema(
        best.select(C.TRACK_ID, *[F.col(f"_m.{n}").alias(n) for n in names], F.lit(source).alias(C.SOURCE)),
        TRACKS.schema,
    )


def playlists_frame(df: DataFrame, *, source: str, fields: Mapping[str, Column]) -> DataFrame:
    """Project to :data:`PLAYLISTS`' schema; rows without a playlist id or track id are dropped."""
    cols = [
        (F.lit(source) if f.name == C.SOURCE else fields.get(f.name, F.lit(None))).cast(f.dataType).alias(f.name)
        for f in PLAYLISTS.schema.fields
    ]
    return _with_schema(
        df.select(*cols).where(F.col(C.PLAYLIST_ID).isNotNull() & F.col(C.TRACK_ID).isNotNull()), PLAYLISTS.schema
    )


def play_counts_frame(df: DataFrame, *, source: str, fields: Mapping[str, Column]) -> DataFrame:
    """Project to :data:`PLAY_COUNTS`' schema; rows lacking a user, item or numeric count are dropped."""
    cols = [
        (F.lit(source) if f.name == C.SOURCE else fields[f.name]).cast(f.dataType).alias(f.name)
        for f in PLAY_COUNTS.schema.fields
    ]
    out = df.select(*cols).where(
        F.col(C.USER_ID).isNotNull() & F.col(C.TRACK_ID).isNotNull() & F.col(C.PLAY_COUNT).isNotNull()
    )
    return _with_schema(out, PLAY_COUNTS.schema)
