"""Which files of a folder or zip a reader takes: exports as users have them.

People pass the folder Spotify (or a data set) shipped, not a list of files: Spotify's *Extended*
history folder holds ``Streaming_History_Audio_*.json`` next to ``Streaming_History_Video_*.json`` and a
``ReadMeFirst_*.pdf``; the account-data export holds ``StreamingHistory*.json`` next to
``Playlist*.json``, ``Userdata.json`` and more; both come as a zip (``my_spotify_data.zip``) with nested
folders. :func:`select_inputs` turns such a path into the files one reader takes, by file-name pattern
(:data:`FORMAT_FILES`), and says which files it left out and why, for the ingest summary. A file it
takes and cannot parse still fails the reader: only the choice of files is lenient.

Local paths are listed with :mod:`os`; a path with a URI scheme (``s3a://``, ``abfss://``, ``dbfs:/``)
is handed to the reader unchanged (Spark expands folders and globs there; point it at the audio files
with a glob such as ``.../Streaming_History_Audio_*.json``). A local zip is unpacked on the driver into
``work_dir`` (the ingest step passes a folder under ``storage.artifacts_dir``): a personal export is a
few megabytes, Spark cannot read inside a zip, and unpacking once per zip content (the folder is named
by the zip's sha1) keeps reruns idempotent. A zip on a cluster path is refused with a clear message:
copy it to the driver or unpack it into the object store first.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import zipfile
from dataclasses import dataclass, field

from spotrec.errors import ReaderFormatError

FORMAT_FILES: dict[str, tuple[str, ...]] = {
    "spotify_streaming_history": ("StreamingHistory*.json", "StreamingHistory_music_*.json"),
    "spotify_extended": ("Streaming_History_Audio_*.json", "endsong_*.json"),
    "spotify_playlist": ("Playlist*.json",),
    "lastfm_1k": ("userid-timestamp-*.tsv",),
    "mssd": ("*.csv", "*.csv.gz"),
    "generic_csv": ("*.csv", "*.tsv", "*.txt", "*.csv.gz", "*.tsv.gz"),
    "generic_jsonl": ("*.jsonl", "*.json", "*.ndjson", "*.jsonl.gz"),
    "generic_play_counts": ("*.csv", "*.tsv", "*.txt", "*.dat", "*.csv.gz", "*.tsv.gz", "*.txt.gz"),
    "generic_playlists": ("*.csv", "*.tsv", "*.txt", "*.jsonl", "*.json", "*.ndjson"),
    "hetrec": ("user_artists.dat",),
}
"""File-name patterns (case-insensitive) each reader takes from a folder. Formats not named here
(Parquet, MPD, Yes.com, catalogue files) get their folder as given: Spark's own folder reading fits them."""

_WHY: dict[str, str] = {
    "Streaming_History_Video_*.json": "video history, not music",
    "ReadMeFirst_*": "Spotify's read-me document",
    "*.pdf": "a PDF document",
    "StreamingHistory_podcast_*.json": "podcast history, not music",
}


@dataclass(frozen=True)
class Inputs:
    """What a reader is given for one configured path.

    Attributes:
        paths: the path as given (a file, glob or cluster URI) or the list of files taken from a folder.
        skipped: ``(file name, why)`` for every file of the folder that the reader does not take.
    """

    paths: str | list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the ingest report: the files left out and why (empty when none)."""
        if not self.skipped:
            return ""
        shown = ", ".join(f"{name} ({why})" for name, why in self.skipped[:8])
        more = f" and {len(self.skipped) - 8} more" if len(self.skipped) > 8 else ""
        return f"skipped {len(self.skipped)} file(s): {shown}{more}"


def _is_local(path: str) -> bool:
    return "://" not in path and not path.startswith("dbfs:")


def _why_skipped(name: str, fmt: str) -> str:
    for pattern, why in _WHY.items():
        if fnmatch.fnmatch(name.lower(), pattern.lower()):
            return why
    return f"not a {fmt} file (takes {', '.join(FORMAT_FILES[fmt])})"


def unzip(path: str, work_dir: str) -> str:
    """Unpack a local zip into ``work_dir/<sha1 of the zip>/`` once; returns that folder.

    Raises:
        ReaderFormatError: the file is not a zip, or a member would land outside the folder.
    """
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    target = os.path.abspath(os.path.join(work_dir, "unzipped", digest.hexdigest()[:16]))
    done = os.path.join(target, ".complete")
    if os.path.exists(done):
        return target
    try:
        with zipfile.ZipFile(path) as zf:
            for member in zf.namelist():
                dest = os.path.abspath(os.path.join(target, member))
                if not dest.startswith(target + os.sep):
                    raise ReaderFormatError("zip", path, None, f"member {member!r} would unpack outside its folder")
            zf.extractall(target)
    except zipfile.BadZipFile as exc:
        raise ReaderFormatError("zip", path, None, f"not a readable zip file ({exc})") from exc
    with open(done, "w") as fh:
        fh.write(path)
    return target


def select_inputs(fmt: str, path: str, *, work_dir: str) -> Inputs:
    """The files reader ``fmt`` takes from ``path`` (a file, folder, glob or zip), and those it skips.

    A folder is walked recursively (hidden and ``_``-prefixed entries ignored, as Spark does); files
    matching the format's patterns are taken, in path order, except files known to hold something else
    (video or podcast histories, read-mes, PDFs). A zip is unpacked first (see the module
    docstring). A single file, a glob, a cluster URI, or a format without patterns is returned as
    given.

    Raises:
        ReaderFormatError: a folder or zip holds no file the format takes (the message lists what it
            holds), or a zip is on a cluster path.
    """
    if path.lower().endswith(".zip"):
        if not _is_local(path):
            raise ReaderFormatError(
                fmt, path, None, "a zip on a cluster path cannot be read: unpack it there, or pass a local copy"
            )
        if not os.path.isfile(path):
            raise ReaderFormatError(fmt, path, None, "no file matches this path")
        folder = unzip(path, work_dir)
    elif _is_local(path) and os.path.isdir(path) and fmt in FORMAT_FILES:
        folder = path
    else:
        return Inputs(path)
    patterns = FORMAT_FILES.get(fmt)
    taken: list[str] = []
    skipped: list[tuple[str, str]] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if name.startswith((".", "_")):
                continue
            full = os.path.join(root, name)
            known_other = any(fnmatch.fnmatch(name.lower(), p.lower()) for p in _WHY)
            if not known_other and (
                patterns is None or any(fnmatch.fnmatch(name.lower(), p.lower()) for p in patterns)
            ):
                taken.append(full)
            else:
                skipped.append((os.path.relpath(full, folder), _why_skipped(name, fmt)))
    if not taken:
        held = ", ".join(name for name, _ in skipped[:8]) or "nothing"
        raise ReaderFormatError(
            fmt, path, None, f"no file here is a {fmt} file ({', '.join(patterns or ())}); it holds {held}"
        )
    return Inputs(taken, skipped)
