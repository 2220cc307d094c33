"""JSON records for the readers: JSON-array and JSON-lines files alike, and checks of each file's first record."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.errors import ReaderFormatError
from spotrec.sources.frames import empty_frame
from spotrec.sources.text import LINE, LOG, TEXT, FileHead, local_path, nonblank, numbered_lines, read_text


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
