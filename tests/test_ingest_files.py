"""Ingest from real files through the CLI entry points: bad lines, empty files, wrong formats, reruns."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spotrec import columns as C
from spotrec.cli import main
from spotrec.config import SourceSpec
from spotrec.errors import ReaderFormatError
from spotrec.steps.ingest import run_ingest
from spotrec.storage import Storage
from spotrec.tables import QUARANTINE, SILVER_EVENTS

ROOT = Path(__file__).resolve().parents[1]


def _line(**kw):
    row = {"user_id": "u1", "track_id": "t1", "ts": "2026-11-01T10:00:00Z", "ms_played": 200000}
    row.update(kw)
    return json.dumps(row)


def _write_bad_jsonl(path: Path) -> None:
    path.write_text(
        "\n".join(
            [
                _line(),  # 1 clean
                _line(),  # 2 duplicate of line 1 (same play exported twice)
                '{"user_id": "u1", "track_id": ',  # 3 malformed JSON
                _line(user_id=None),  # 4 missing user
                _line(track_id=""),  # 5 missing track
                _line(ms_played="abc"),  # 6 non-numeric
                _line(ms_played=-3),  # 7 negative
                _line(ts="31/12/2026 25:61"),  # 8 unparseable
                _line(ts="2999-01-01T00:00:00Z"),  # 9 future
                _line(track_id="t2", ts="2026-11-02T10:00:00Z"),  # 10 clean
            ]
        )
        + "\n"
    )


@pytest.mark.slow  # a whole step end to end: in make test, not make test-fast
def test_bad_file_rows_are_conserved_and_rerun_is_idempotent(spark, storage: Storage, config, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_bad_jsonl(raw / "events.jsonl")
    (raw / "empty.jsonl").write_text("")
    sources = [SourceSpec(kind="events", format="generic_jsonl", path=str(raw))]

    counts = run_ingest(spark, storage, config, "run1", sources)
    assert (counts.read, counts.silver_new, counts.quarantined, counts.duplicates) == (10, 2, 7, 1)
    reasons = sorted((r[C.RECORD_NO], r[C.REASON]) for r in storage.read(QUARANTINE).collect())
    assert reasons == [
        (3, "malformed_record"),
        (4, "missing_user_id"),
        (5, "missing_track_id"),
        (6, "invalid_ms_played"),
        (7, "negative_ms_played"),
        (8, "unparseable_ts"),
        (9, "future_ts"),
    ]
    versions = (storage.version(SILVER_EVENTS), storage.version(QUARANTINE))
    again = run_ingest(spark, storage, config, "run2", sources)
    assert (again.read, again.silver_new, again.quarantined, again.duplicates) == (10, 0, 7, 3)
    assert (storage.version(SILVER_EVENTS), storage.version(QUARANTINE)) == versions
    assert storage.read(SILVER_EVENTS).count() == 2


def test_wrong_format_file_is_a_clear_error_and_a_nonzero_exit(spark, config, tmp_path, capsys):
    csv = tmp_path / "StreamingHistory0.json"
    csv.write_text("endTime,artistName,trackName,msPlayed\n2020-01-01 10:00,A,B,1000\n")
    with pytest.raises(ReaderFormatError, match=r"spotify_streaming_history: .*StreamingHistory0.json:1"):
        run_ingest(
            spark,
            Storage(spark, config.storage),
            config,
            "run1",
            [SourceSpec(kind="events", format="spotify_streaming_history", path=str(csv))],
        )
    code = main(
        [
            "ingest",
            "--set",
            f"storage.root={config.storage.root}",
            "--source",
            f"spotify_streaming_history={csv}",
        ]
    )
    assert code == 2
    assert "is not in this reader's format" in capsys.readouterr().err


@pytest.mark.slow
def test_spark_submit_runs_the_ingest_job(tmp_path):
    """The thin jobs/ entry point works under spark-submit in local mode (a separate JVM and driver)."""
    raw = tmp_path / "raw"
    raw.mkdir()
    _write_bad_jsonl(raw / "events.jsonl")
    spark_submit = Path(sys.executable).parent / "spark-submit"
    jars = sorted(str(p) for p in Path(os.environ["SPOTREC_DELTA_JARS"]).glob("*.jar"))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    cmd = [
        str(spark_submit),
        "--master",
        "local[2]",
        "--jars",
        ",".join(jars),
        "--conf",
        "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
        "--conf",
        "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "--conf",
        "spark.ui.enabled=false",
        str(ROOT / "jobs" / "ingest.py"),
        "--set",
        f"storage.root={tmp_path / 'wh'}",
        "--source",
        f"generic_jsonl={raw}",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "read 10 rows: 2 new in silver, 7 quarantined, 1 duplicates of kept events" in done.stdout
    assert (tmp_path / "wh" / "silver" / "listen_events" / "_delta_log").is_dir()
