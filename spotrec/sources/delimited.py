"""Delimited text (CSV, TSV, ``;``-separated) in the dialects people export, parsed by Spark's CSV parser.

Each record is parsed with :func:`pyspark.sql.functions.from_csv` (Spark's univocity CSV parser, the
one ``spark.read.csv`` uses) over numbered lines, so every record keeps its file and line number for
quarantine. The dialect comes from Spark's CSV options: quoting with ``"`` and ``""`` as escaped quote,
blanks around fields ignored (headers such as ``"user_id", "artistname"``), a UTF-8 BOM dropped, any
of ``\\n`` / ``\\r\\n`` / ``\\r`` as line end (Spark's text reader), and the delimiter given or sniffed
from the header line among ``,`` ``;`` tab and ``|``. A record whose field count differs from its
file's header is not dropped: it comes back with ``ok`` false and its line, for ingest to quarantine.

A quoted field spanning lines is read with ``multiline=True``: lines are joined into records where the
quotes before them are balanced, which takes a window over each file in line order, so one file is one
task (the reason it is opt-in; Spark's ``multiLine`` CSV read is not splittable either). A record
keeps the number of its first line. An unbalanced quote there joins the rest of its file into one
malformed record, as in any CSV reader.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.sources.text import LINE, FileHead, nonblank, numbered_lines

FIELDS = "_fields"
OK = "ok"
_CANDIDATES = (",", ";", "\t", "|")


def sniff_delimiter(text: str) -> str:
    """The candidate delimiter occurring most often outside quotes in ``text`` (``,`` on a tie or none)."""
    outside = "".join(part for i, part in enumerate(text.split('"')) if i % 2 == 0)
    counts = {d: outside.count(d) for d in _CANDIDATES}
    best = max(_CANDIDATES, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def split_header(text: str, delimiter: str) -> list[str]:
    """A header line's column names: CSV quoting, blanks after delimiters and around names dropped."""
    row = next(csv.reader([text], delimiter=delimiter, skipinitialspace=True), [])
    return [name.strip() for name in row]


@dataclass(frozen=True)
class Delimited:
    """Parsed delimited files.

    Attributes:
        records: ``source_file``, ``record_no`` (line of the record's start), ``raw`` (its text), ``ok``
            (its field count is its file's) and ``_fields`` (array of the field strings, null where not ok).
        headers: each file's column names, or None for a file without header, by ``source_file``.
        heads: each file's first non-blank line.
        delimiter: the delimiter used.
    """

    records: DataFrame
    headers: dict[str, list[str] | None]
    heads: dict[str, FileHead]
    delimiter: str


def _stitch(lines: DataFrame) -> DataFrame:
    """Join lines into records where a quoted field spans lines (see the module docstring)."""
    quotes = F.length(LINE) - F.length(F.regexp_replace(LINE, '"', ""))
    in_file = Window.partitionBy(C.SOURCE_FILE).orderBy(C.RECORD_NO)
    before = F.coalesce(
        F.sum((quotes % 2).cast("long")).over(in_file.rowsBetween(Window.unboundedPreceding, -1)), F.lit(0)
    )
    starts = lines.withColumn("_start", (before % 2 == 0).cast("long"))
    numbered = starts.withColumn("_rec", F.sum("_start").over(in_file.rowsBetween(Window.unboundedPreceding, 0)))
    grouped = numbered.groupBy(C.SOURCE_FILE, "_rec").agg(
        F.min(C.RECORD_NO).alias(C.RECORD_NO),
        F.sort_array(F.collect_list(F.struct(C.RECORD_NO, LINE))).alias("_parts"),
    )
    return grouped.select(
        C.SOURCE_FILE, C.RECORD_NO, F.array_join(F.transform("_parts", lambda p: p[LINE]), "\n").alias(LINE)
    )


def read_delimited(
    spark: SparkSession,
    path: str | list[str],
    reader: str,
    *,
    delimiter: str | None = None,
    header: bool | Callable[[list[str]], bool] = True,
    multiline: bool = False,
) -> Delimited:
    """Read delimited files into numbered, parsed records (see the module docstring).

    Args:
        spark: the session.
        path: files, a folder or a glob.
        reader: the reader's name, for messages.
        delimiter: the field delimiter; None sniffs it from the first file's first line.
        header: whether each file's first non-blank line is a header, or a function of that line's
            fields that says so per file (for formats whose header is optional).
        multiline: join quoted fields spanning lines (one task per file).
    """
    numbered = numbered_lines(spark, path, reader)
    heads = numbered.heads
    if delimiter is None:
        delimiter = sniff_delimiter(next(iter(heads.values())).text) if heads else ","
    headers: dict[str, list[str] | None] = {}
    widths: dict[str, int] = {}
    header_rows: list[tuple[str, int | None, int]] = []
    for f, head in heads.items():
        names = split_header(head.text, delimiter)
        has_header = header(names) if callable(header) else header
        headers[f] = names if has_header else None
        widths[f] = len(names)
        header_rows.append((f, head.record_no if has_header else None, len(names)))
    lines = numbered.lines
    if multiline:
        lines = _stitch(lines)
    layout = spark.createDataFrame(
        header_rows,
        T.StructType(
            [
                T.StructField(C.SOURCE_FILE, T.StringType()),
                T.StructField("_header_no", T.LongType()),
                T.StructField("_width", T.IntegerType()),
            ]
        ),
    )
    df = lines.join(F.broadcast(layout), C.SOURCE_FILE).where(
        nonblank(LINE) & (F.col("_header_no").isNull() | (F.col(C.RECORD_NO) != F.col("_header_no")))
    )
    options = {
        "sep": delimiter,
        "quote": '"',
        "escape": '"',
        "ignoreLeadingWhiteSpace": "true",
        "ignoreTrailingWhiteSpace": "true",
        "mode": "PERMISSIVE",
        "columnNameOfCorruptRecord": "_corrupt",
        "nullValue": "",
    }
    fields = F.lit(None).cast("array<string>")
    ok = F.lit(False)
    for width in sorted(set(widths.values()), reverse=True):
        schema = ", ".join(f"c{i} string" for i in range(width)) + ", _corrupt string"
        parsed = F.from_csv(F.col(LINE), schema, options)
        this = F.col("_width") == width
        fields = F.when(
            this & parsed["_corrupt"].isNull(), F.array(*[parsed[f"c{i}"] for i in range(width)])
        ).otherwise(fields)
        ok = F.when(this, parsed["_corrupt"].isNull()).otherwise(ok)
    records = df.select(C.SOURCE_FILE, C.RECORD_NO, F.col(LINE).alias(C.RAW), ok.alias(OK), fields.alias(FIELDS))
    return Delimited(records, headers, heads, delimiter)


def per_file_indices(spark: SparkSession, indices: Mapping[str, Mapping[str, int]], wanted: list[str]) -> DataFrame:
    """A small broadcastable table: ``source_file`` and one 1-based field index column ``_i_<name>`` per wanted name."""
    rows = [(f, *[idx.get(w) for w in wanted]) for f, idx in indices.items()]
    schema = T.StructType(
        [T.StructField(C.SOURCE_FILE, T.StringType())] + [T.StructField(f"_i_{w}", T.IntegerType()) for w in wanted]
    )
    return F.broadcast(spark.createDataFrame(rows, schema))


def value(name: str) -> F.Column:
    """The field a :func:`per_file_indices` column points at (null where absent or not ok)."""
    return F.try_element_at(F.col(FIELDS), F.col(f"_i_{name}"))
