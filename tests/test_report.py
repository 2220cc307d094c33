"""The HTML report: every chart draws in a real browser, and every plotted value is the table's value."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from spotrec import columns as C
from spotrec.steps.report import build_report, plotted_values
from spotrec.storage import Storage
from spotrec.tables import INGEST_LOG, MODEL_METRICS, QUARANTINE, RUNS

T0 = dt.datetime(2026, 1, 5, 12, 0)


def _metrics_rows() -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    # Two evaluate runs (a trend), one rnn run; ranking metrics at k=10, next-track at 10 and 50.
    for i, (run, t) in enumerate((("eval-1", T0), ("eval-2", T0 + dt.timedelta(days=1)))):
        for model, base in (("als", 0.30), ("cooccurrence", 0.20), ("popularity", 0.10)):
            for metric in ("ndcg", "map", "recall", "hit_rate"):
                rows.append((run, model, None, "last-week", metric, 10, base + 0.01 * i, t))
    t_rnn = T0 + dt.timedelta(days=2)
    for metric, k, v in (("ndcg", 10, 0.25), ("hit_rate", 10, 0.5), ("next_track_hit_rate", 10, 0.12)):
        rows.append(("rnn-1", "rnn_taste", "v1", "last-week", metric, k, v, t_rnn))
    rows.append(("rnn-1", "rnn_taste", "v1", "last-week", "next_track_mrr", 50, 0.07, t_rnn))
    rows.append(("rnn-1", "rnn_taste", "v1", "last-week", "coverage", 10, None, t_rnn))
    t_rl = T0 + dt.timedelta(days=3)
    for world, shift in (("learned_sim", 0.0), ("true_world", -0.5)):
        for policy, reward in (("random", 3.0), ("ah_dqn", 6.0)):
            for metric, mean in (("session_reward", reward + shift), ("completion_rate", 0.6)):
                for stat, v in (("mean", mean), ("ci_low", mean - 0.2), ("ci_high", mean + 0.2)):
                    rows.append(("rl-1", f"rl_policy:{policy}", "p1", world, f"{metric}_{stat}", None, v, t_rl))
    for episode, ret in ((10, 2.0), (20, 3.5), (30, 4.0)):
        rows.append(("rl-1", "rl_policy:ah_dqn", "p1", "training", "episodic_return", episode, ret, t_rl))
    return rows


@pytest.fixture
def report_tables(spark: SparkSession, storage: Storage) -> Storage:
    storage.append(MODEL_METRICS, spark.createDataFrame(_metrics_rows(), MODEL_METRICS.schema))
    storage.append(
        INGEST_LOG,
        spark.createDataFrame(
            [("ing-1", "events", "a.json", 100, 88, 6, 4, 2, T0), ("ing-1", "events", "b.json", 50, 48, 2, 0, 0, T0)],
            INGEST_LOG.schema,
        ),
    )
    storage.append(
        QUARANTINE,
        spark.createDataFrame(
            [("events", "a.json", i, "{}", "missing user_id" if i < 5 else "bad ts", "ing-1", T0) for i in range(8)],
            QUARANTINE.schema,
        ),
    )
    storage.append(
        RUNS,
        spark.createDataFrame(
            [("eval-2", "evaluate", "succeeded", T0, T0, "{}", {"silver.listen_events": 3}, {}, None)], RUNS.schema
        ),
    )
    return storage


def test_every_plotted_value_equals_ops_model_metrics(spark: SparkSession, report_tables: Storage) -> None:
    page = build_report(spark, report_tables)
    plotted = [r for r in plotted_values(page) if r["source"] == MODEL_METRICS.full_name]
    table = {
        (r[C.RUN_ID], r[C.MODEL], r[C.DATASET], r[C.METRIC], r[C.K]): r[C.VALUE]
        for r in report_tables.read(MODEL_METRICS).collect()
    }
    assert plotted
    for rec in plotted:
        key = (rec[C.RUN_ID], rec[C.MODEL], rec[C.DATASET], rec[C.METRIC], rec[C.K])
        assert rec[C.VALUE] == pytest.approx(table[key]), key
    keys = {(r[C.RUN_ID], r[C.MODEL], r[C.METRIC]) for r in plotted}
    # Newest run per model on the last-week chart; the RNN beside ALS; CIs of the policies; the curve.
    assert ("eval-2", "als", "ndcg") in keys and ("rnn-1", "rnn_taste", "ndcg") in keys
    assert ("rl-1", "rl_policy:ah_dqn", "session_reward_ci_high") in keys
    assert ("rl-1", "rl_policy:ah_dqn", "episodic_return") in keys
    funnel = {r["field"]: r[C.VALUE] for r in plotted_values(page) if r["source"] == INGEST_LOG.full_name}
    assert funnel == {C.ROWS_READ: 150, C.SILVER_NEW: 136, C.QUARANTINED: 8, C.DUPLICATES: 4, C.EXCLUDED: 2}
    reasons = {r[C.REASON]: r[C.VALUE] for r in plotted_values(page) if r["source"] == QUARANTINE.full_name}
    assert reasons == {"missing user_id": 5, "bad ts": 3}
    charts = page.count('<figure class="chart"')
    # ranking, next track, 2 RL metrics, training curve, trend (two evaluate runs), funnel, quarantine reasons
    assert charts == 8
    assert "eval-2" in page and "silver.listen_events v3" in page


def test_no_trend_chart_with_a_single_run(spark: SparkSession, storage: Storage) -> None:
    rows = [r for r in _metrics_rows() if r[0] != "eval-1"]
    storage.append(MODEL_METRICS, spark.createDataFrame(rows, MODEL_METRICS.schema))
    assert 'data-chart="ndcg-trend"' not in build_report(spark, storage)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHECK = """<script>window.addEventListener('load', () => {
for (const f of document.querySelectorAll('figure.chart')) { const i = f.querySelector('img');
f.setAttribute('data-drawn', String(i.complete && i.naturalWidth > 100)); } });</script>"""


@pytest.mark.integration  # a whole step over Delta tables: in make test, not make test-fast
def test_every_chart_draws_in_headless_chromium(spark: SparkSession, report_tables: Storage, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium; .ci/run installs it)")
    page = build_report(spark, report_tables)
    path = tmp_path / "report.html"
    path.write_text(page.replace("</body>", CHECK + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    n = page.count('<figure class="chart"')
    assert dom.count('data-drawn="true"') == n, dom.count('data-drawn="false"')
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=900,4000", path.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000
