"""Reading text files for the readers: numbered lines, the first line of each file, delimited fields.

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
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.errors import ReaderFormatError

LOG = logging.getLogger("spotrec.sources")

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
