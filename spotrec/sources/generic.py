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
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spotrec import columns as C
from spotrec.errors import ConfigError, ReaderFormatError
from spotrec.sources.delimited import OK, per_file_indices, read_delimited, value
from spotrec.sources.frames import (
    CANONICAL_FIELDS,
    empty_events,
    empty_frame,
    format_utc,
    iso_utc,
    name_track_id,
    play_counts_frame,
    playlists_frame,
    reader_frame,
    tracks_frame,
    utc_wall_clock,
)
from spotrec.sources.json_records import JSON_MAP, check_json_heads
from spotrec.sources.spotify import PlaylistRead
from spotrec.sources.text import LINE, LOG, blank_to_null, local_path, nonblank, numbered_lines
from spotrec.tables import PLAY_COUNTS, PLAYLISTS, TRACKS

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
    path: str | list[str],
    *,
    mapping: Mapping[str, str] | None = None,
    delimiter: str | None = None,
    multiline: bool = False,
    source: str = GENERIC_CSV,
) -> DataFrame:
    """Read headed CSV (or ``;`` / tab-delimited) files with a column mapping into READER_SCHEMA.

    Parsing is Spark's CSV parser in the dialects of :mod:`spotrec.sources.delimited`: quoted headers
    with blanks after the commas, a BOM, CRLF line ends, ``""`` inside quotes.

    Args:
        spark: the session.
        path: a file, folder or glob of delimited files, each with a header line.
        mapping: ``{canonical_name: source_column}``; default identity over canonical names present.
        delimiter: the field delimiter; default: sniffed from the first header among ``,`` ``;`` tab ``|``.
        multiline: quoted fields may span lines (one Spark task per file).
        source: the value of the ``source`` column (e.g. ``synthetic``).

    Returns:
        One row per data record (``record_no`` = its line number); empty fields are null; a record with
        a different field count than its header comes back with only ``raw`` set (ingest quarantines
        it as ``malformed_record``).

    Raises:
        ReaderFormatError: a header lacks a mapped column or any user / time / track column.
    """
    d = read_delimited(spark, path, GENERIC_CSV, delimiter=delimiter, header=True, multiline=multiline)
    if not d.heads:
        return empty_events(spark)
    mapped: dict[str, str] = {}
    indices: dict[str, dict[str, int]] = {}
    for f, names in d.headers.items():
        header = names or []
        head = d.heads[f]
        resolved = resolve_mapping(GENERIC_CSV, mapping, header, head.source_file, head.record_no)
        mapped.update(resolved)
        indices[f] = {c: header.index(src) + 1 for c, src in resolved.items()}
    wanted = list(CANONICAL_FIELDS)
    df = d.records.join(per_file_indices(spark, indices, wanted), C.SOURCE_FILE)
    values = {c: blank_to_null(value(c)) for c in wanted}
    return reader_frame(df, source=source, raw=F.col(C.RAW), ok=F.col(OK), fields=_canonical_fields(values, mapped))


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


# -- play counts and playlists from plain files -------------------------------------------------------

GENERIC_PLAY_COUNTS = "generic_play_counts"
GENERIC_PLAYLISTS = "generic_playlists"

ColumnRef = str | int
"""A column by header name, or by 0-based position (for files without a header)."""


def _index(reader: str, ref: ColumnRef, header: list[str] | None, where: str, line_no: int | None) -> int:
    """The 1-based field index of ``ref`` in a file with ``header`` (None: no header, positions only)."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        return int(ref) + 1
    if header is None:
        raise ReaderFormatError(
            reader, where, line_no, f"column {ref!r} named but the file has no header; map positions"
        )
    if ref not in header:
        raise ReaderFormatError(reader, where, line_no, f"mapped column {ref!r} not in {header}")
    return header.index(ref) + 1


def read_generic_play_counts(
    spark: SparkSession,
    path: str | list[str],
    *,
    mapping: Mapping[str, ColumnRef] | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    user_prefix: str = "",
    item_prefix: str = "",
) -> DataFrame:
    """Read play counts (``user, item, count`` per line; CSV or TSV, header or not) into PLAY_COUNTS' schema.

    The shape of the Echo Nest Taste Profile triplets (``user \\t song \\t count``, no header, 48M lines)
    and of HetRec's ``user_artists.dat`` (``userID \\t artistID \\t weight``, header, CRLF).

    Args:
        spark: the session.
        path: files, a folder or a glob.
        mapping: ``{"user_id": ref, "track_id": ref, "play_count": ref}``, each ref a header name or a
            0-based position; default positions 0, 1, 2.
        delimiter: default sniffed from the first line (``,`` ``;`` tab ``|``).
        header: whether files start with a header; None: a file has one when its first line's count
            field is not a number.
        user_prefix: prefixed to user ids (so numeric ids cannot collide with another source's).
        item_prefix: prefixed to item ids (e.g. ``artist:`` when the items are artists).

    Returns:
        One row per line with a user, an item and an integer count; other lines are left out (a count
        without all three cannot be kept), and a repeated (user, item) is summed.

    Raises:
        ReaderFormatError: a mapped column is missing, or names are mapped for a file without header.
    """
    refs: dict[str, ColumnRef] = {C.USER_ID: 0, C.TRACK_ID: 1, C.PLAY_COUNT: 2, **(mapping or {})}
    unknown = sorted(set(refs) - {C.USER_ID, C.TRACK_ID, C.PLAY_COUNT})
    if unknown:
        raise ConfigError(f"{GENERIC_PLAY_COUNTS}: mapping keys {unknown}; use user_id, track_id, play_count")

    def has_header(names: list[str]) -> bool:
        if header is not None:
            return header
        ref = refs[C.PLAY_COUNT]
        if isinstance(ref, str) and not ref.isdigit():
            return True
        pos = int(ref)
        return pos >= len(names) or not names[pos].strip().lstrip("-").replace(".", "", 1).isdigit()

    d = read_delimited(spark, path, GENERIC_PLAY_COUNTS, delimiter=delimiter, header=has_header)
    if not d.heads:
        return empty_frame(spark, PLAY_COUNTS.schema)
    indices = {
        f: {c: _index(GENERIC_PLAY_COUNTS, r, names, f, d.heads[f].record_no) for c, r in refs.items()}
        for f, names in d.headers.items()
    }
    wanted = [C.USER_ID, C.TRACK_ID, C.PLAY_COUNT]
    df = d.records.join(per_file_indices(spark, indices, wanted), C.SOURCE_FILE).where(F.col(OK))
    user, item = blank_to_null(value(C.USER_ID)), blank_to_null(value(C.TRACK_ID))
    count = F.floor(value(C.PLAY_COUNT).try_cast("double")).cast("long")
    counts = (
        df.select(
            F.concat(F.lit(user_prefix), user).alias(C.USER_ID),
            F.concat(F.lit(item_prefix), item).alias(C.TRACK_ID),
            count.alias(C.PLAY_COUNT),
        )
        .where(F.col(C.USER_ID).isNotNull() & F.col(C.TRACK_ID).isNotNull() & F.col(C.PLAY_COUNT).isNotNull())
        .groupBy(C.USER_ID, C.TRACK_ID)
        .agg(F.sum(C.PLAY_COUNT).alias(C.PLAY_COUNT))
    )
    return play_counts_frame(
        counts, source=GENERIC_PLAY_COUNTS, fields={c: F.col(c) for c in (C.USER_ID, C.TRACK_ID, C.PLAY_COUNT)}
    )


_PLAYLIST_KEYS = (C.USER_ID, C.PLAYLIST_ID, C.PLAYLIST_NAME, C.POSITION, C.TRACK_ID, C.ARTIST_NAME, C.TRACK_NAME)


def read_generic_playlists(
    spark: SparkSession,
    path: str | list[str],
    *,
    mapping: Mapping[str, str] | None = None,
    delimiter: str | None = None,
    user_id: str | None = None,
) -> PlaylistRead:
    """Read playlists from headed CSV or JSON lines, one row per playlist item, with a column mapping.

    Args:
        spark: the session.
        path: files, a folder or a glob; a file whose first line starts with ``{`` is JSON lines.
        mapping: ``{field: column}`` over ``user_id``, ``playlist_id`` or ``playlist_name`` (one
            needed), ``position`` (optional: file order otherwise), and ``track_id`` or ``artist_name``
            + ``track_name``; default identity over those names present.
        delimiter: CSV delimiter; default sniffed.
        user_id: the owner when the file names none.

    Returns:
        :class:`PlaylistRead`. Without a ``playlist_id`` column the id is ``generic_playlist:`` + sha1
        of (user, playlist name); without ``position`` it is the item's 0-based order in its file(s)
        (by file, then line); without ``track_id`` the name-based id
        (:func:`~spotrec.sources.frames.name_track_id`). Items lacking a playlist or a track are left out.

    Raises:
        ReaderFormatError: a mapped column is absent, or no playlist or track column is mapped.
    """
    numbered = numbered_lines(spark, path, GENERIC_PLAYLISTS)
    if not numbered.heads:
        return PlaylistRead(empty_frame(spark, PLAYLISTS.schema), empty_frame(spark, TRACKS.schema))
    json_files = [f for f, h in numbered.heads.items() if h.text.lstrip().startswith("{")]
    csv_files = [f for f in numbered.heads if f not in json_files]

    def resolve(available: list[str], where: str, line_no: int | None) -> dict[str, str]:
        resolved = dict(mapping) if mapping is not None else {k: k for k in _PLAYLIST_KEYS if k in available}
        unknown = sorted(set(resolved) - set(_PLAYLIST_KEYS))
        if unknown:
            raise ConfigError(f"{GENERIC_PLAYLISTS}: mapping keys {unknown} are not among {list(_PLAYLIST_KEYS)}")
        absent = sorted(src for src in resolved.values() if src not in available)
        if absent:
            raise ReaderFormatError(GENERIC_PLAYLISTS, where, line_no, f"mapped column(s) {absent} not in {available}")
        has_list = C.PLAYLIST_ID in resolved or C.PLAYLIST_NAME in resolved
        has_track = C.TRACK_ID in resolved or {C.ARTIST_NAME, C.TRACK_NAME} <= set(resolved)
        if not (has_list and has_track):
            raise ReaderFormatError(
                GENERIC_PLAYLISTS,
                where,
                line_no,
                f"needs a playlist_id or playlist_name column and track_id (or artist_name + track_name); "
                f"mapped {sorted(resolved)} from {available}",
            )
        return resolved

    parts: list[DataFrame] = []
    mapped: dict[str, str] = {}
    if csv_files:
        d = read_delimited(spark, [local_path(f) for f in csv_files], GENERIC_PLAYLISTS, delimiter=delimiter)
        indices = {}
        for f, names in d.headers.items():
            r = resolve(names or [], f, d.heads[f].record_no)
            mapped.update(r)
            indices[f] = {k: (names or []).index(src) + 1 for k, src in r.items()}
        df = d.records.join(per_file_indices(spark, indices, list(_PLAYLIST_KEYS)), C.SOURCE_FILE)
        parts.append(df.select(C.SOURCE_FILE, C.RECORD_NO, *[blank_to_null(value(k)).alias(k) for k in _PLAYLIST_KEYS]))
    if json_files:
        heads = {f: numbered.heads[f] for f in json_files}
        check_json_heads(GENERIC_PLAYLISTS, heads, lambda _record: None)
        for head in heads.values():
            mapped.update(resolve(list(json.loads(head.text)), head.source_file, head.record_no))
        lines = numbered.lines.where(F.col(C.SOURCE_FILE).isin(json_files) & nonblank(LINE))
        m = F.from_json(LINE, JSON_MAP)
        parts.append(
            lines.select(
                C.SOURCE_FILE,
                C.RECORD_NO,
                *[
                    (blank_to_null(m.getItem(mapped[k])) if k in mapped else F.lit(None).cast("string")).alias(k)
                    for k in _PLAYLIST_KEYS
                ],
            )
        )
    items = parts[0]
    for part in parts[1:]:
        items = items.unionByName(part)
    user = F.coalesce(F.col(C.USER_ID), F.lit(user_id)) if user_id is not None else F.col(C.USER_ID)
    list_id = F.coalesce(
        F.col(C.PLAYLIST_ID),
        F.when(
            F.col(C.PLAYLIST_NAME).isNotNull(),
            F.concat(
                F.lit("generic_playlist:"),
                F.sha1(F.concat_ws("\x1f", F.coalesce(user, F.lit("")), F.col(C.PLAYLIST_NAME)).cast("binary")),
            ),
        ),
    )
    track = F.coalesce(F.col(C.TRACK_ID), name_track_id(F.col(C.ARTIST_NAME), F.col(C.TRACK_NAME)))
    items = items.select(
        list_id.alias(C.PLAYLIST_ID),
        F.col(C.PLAYLIST_NAME),
        user.alias(C.USER_ID),
        F.col(C.POSITION).try_cast("int").alias("_pos"),
        track.alias(C.TRACK_ID),
        F.col(C.TRACK_NAME),
        F.col(C.ARTIST_NAME),
        C.SOURCE_FILE,
        C.RECORD_NO,
    ).where(F.col(C.PLAYLIST_ID).isNotNull() & F.col(C.TRACK_ID).isNotNull())
    order = Window.partitionBy(C.PLAYLIST_ID).orderBy(C.SOURCE_FILE, C.RECORD_NO)
    items = items.withColumn(C.POSITION, F.coalesce(F.col("_pos"), F.row_number().over(order) - 1))
    playlists = playlists_frame(
        items,
        source=GENERIC_PLAYLISTS,
        fields={c: F.col(c) for c in (C.PLAYLIST_ID, C.PLAYLIST_NAME, C.USER_ID, C.POSITION, C.TRACK_ID)},
    )
    tracks = tracks_frame(
        items,
        source=GENERIC_PLAYLISTS,
        fields={C.TRACK_ID: F.col(C.TRACK_ID), C.TRACK_NAME: F.col(C.TRACK_NAME), C.ARTIST_NAME: F.col(C.ARTIST_NAME)},
    )
    return PlaylistRead(playlists, tracks)
