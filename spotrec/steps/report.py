"""``spotrec report``: one self-contained HTML file with charts of what the pipeline produced.

Each section appears when the tables it needs exist; only small aggregates reach the driver (per model the
newest run's metric rows, at most a few thousand points per plot). The drawing is :mod:`spotrec.report`.

Sections, in order: the runs and input table versions behind the figures (``ops.runs``), the ingest funnel and
quarantine reasons, Discover Weekly's last-week comparison (every recommender, ALS and RNN alike, on one
chart), next-track accuracy, the RL policies in the learned simulator and against the true listener (one
chart per metric, 95% CIs), the RL training curve, trends across runs (only with two or more runs), the
popularity long tail and the track embedding map.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.report import Record, Series, bar_chart, hbar_chart, line_chart, page, pca_2d, scatter_chart, table_html
from spotrec.steps.base import StepContext, StepResult
from spotrec.storage import Storage
from spotrec.tables import (
    INGEST_LOG,
    INTERACTIONS,
    MODEL_METRICS,
    QUARANTINE,
    RUNS,
    TASTE_CLUSTERS,
    TRACK_FACTORS,
)

RANKING_DATASET = "last-week"
RANKING_METRICS = ("ndcg", "map", "precision", "recall", "hit_rate")
"""Discover Weekly's last-week ranking metrics (all rates in [0, 1]: one axis)."""
NEXT_TRACK_METRICS = ("next_track_hit_rate", "next_track_mrr")
RL_WORLDS = ("learned_sim", "true_world")
RL_METRICS = ("session_reward", "completion_rate", "skip_rate", "session_length")
"""Stored by the rl step as ``<metric>_mean`` / ``_ci_low`` / ``_ci_high`` (95%)."""
RL_METRIC_LABELS = {
    "session_reward": "session reward (sum over the session)",
    "completion_rate": "completion rate (completed / played)",
    "skip_rate": "early-skip rate (skips / played)",
    "session_length": "tracks played per session",
}
TRAINING_DATASET = "training"
"""The rl step's per-episode curve (``k`` = episode)."""
MODEL_METRICS_SOURCE = MODEL_METRICS.full_name


def _record(r: Row, value: float | None = None) -> Record:
    return {
        "source": MODEL_METRICS_SOURCE,
        C.RUN_ID: r[C.RUN_ID],
        C.MODEL: r[C.MODEL],
        C.DATASET: r[C.DATASET],
        C.METRIC: r[C.METRIC],
        C.K: r[C.K],
        C.VALUE: float(r[C.VALUE]) if value is None else value,
    }


def newest_run_rows(metrics: DataFrame, datasets: Sequence[str]) -> list[Row]:
    """Per (dataset, model), the rows of its newest run (small: one run's metrics per model)."""
    rows = metrics.where(F.col(C.DATASET).isin(*datasets) & F.col(C.VALUE).isNotNull())
    newest = rows.groupBy(C.DATASET, C.MODEL).agg(F.max_by(C.RUN_ID, C.CREATED_AT).alias(C.RUN_ID))
    return rows.join(newest, [C.DATASET, C.MODEL, C.RUN_ID]).orderBy(C.MODEL, C.METRIC, C.K).collect()


def metric_bars(rows: Sequence[Row], metrics: Sequence[str]) -> tuple[list[str], list[Series]]:
    """Categories ``metric@k`` and one series per model, from one dataset's newest rows."""
    keyed = {(r[C.MODEL], r[C.METRIC], r[C.K]): r for r in rows if r[C.METRIC] in metrics}
    cats = sorted({(m, k) for _, m, k in keyed}, key=lambda mk: (metrics.index(mk[0]), mk[1] or 0))
    series = []
    for model in sorted({m for m, _, _ in keyed}):
        picked = [keyed.get((model, m, k)) for m, k in cats]
        series.append(
            Series(
                model,
                [None if r is None else float(r[C.VALUE]) for r in picked],
                records=[_record(r) for r in picked if r],
            )
        )
    return [f"{m}@{k}" if k is not None else m for m, k in cats], series


def rl_bars(rows: Sequence[Row], metric: str) -> tuple[list[str], list[Series]]:
    """Policies on the x axis, one series per world, mean with its 95% CI."""
    stats = {(r[C.MODEL], r[C.DATASET], r[C.METRIC]): r for r in rows}
    policies = sorted({p for p, _, m in stats if m == f"{metric}_mean"})
    series = []
    for world in RL_WORLDS:
        means = [stats.get((p, world, f"{metric}_mean")) for p in policies]
        if not any(means):
            continue
        values, cis, records = [], [], []
        for p, mean in zip(policies, means):
            lo, hi = stats.get((p, world, f"{metric}_ci_low")), stats.get((p, world, f"{metric}_ci_high"))
            values.append(None if mean is None else float(mean[C.VALUE]))
            cis.append((float(lo[C.VALUE]), float(hi[C.VALUE])) if lo and hi else None)
            records += [_record(r) for r in (mean, lo, hi) if r is not None]
        series.append(Series(world, values, cis, records))
    return [p.removeprefix("rl_policy:") for p in policies], series


def _runs_header(storage: Storage) -> str:
    if not storage.exists(RUNS):
        return "<p>No ops.runs rows yet.</p>"
    runs = storage.read(RUNS).where(F.col(C.STATUS) == "succeeded")
    newest = runs.groupBy(C.STEP).agg(F.max_by(C.RUN_ID, C.STARTED_AT).alias(C.RUN_ID))
    rows = runs.join(newest, [C.STEP, C.RUN_ID]).orderBy(C.STARTED_AT).collect()
    body = [
        (
            r[C.STEP],
            r[C.RUN_ID],
            f"{r[C.FINISHED_AT]:%Y-%m-%d %H:%M}" if r[C.FINISHED_AT] else "",
            ", ".join(f"{t} v{v}" for t, v in sorted((r[C.INPUTS] or {}).items())) or "-",
        )
        for r in rows
    ]
    return "<p>The newest successful run of each step and the input table versions it read.</p>" + table_html(
        ["step", "run id", "finished (UTC)", "inputs (Delta version)"], body
    )


def _ingest_sections(storage: Storage) -> list[tuple[str, str]]:
    out = []
    if storage.exists(INGEST_LOG):
        log_df = storage.read(INGEST_LOG)
        newest = log_df.agg(F.max_by(C.INGEST_RUN_ID, C.INGEST_TIME)).first()
        if newest is not None and newest[0] is not None:
            run = newest[0]
            fields = (C.ROWS_READ, C.SILVER_NEW, C.QUARANTINED, C.DUPLICATES, C.EXCLUDED)
            sums = log_df.where(F.col(C.INGEST_RUN_ID) == run).agg(*[F.sum(c).alias(c) for c in fields]).first()
            assert sums is not None
            counts = {c: int(sums[c] or 0) for c in fields}
            labels = ["read", "new in silver", "quarantined", "duplicates", "excluded"]
            values = [float(counts[c]) for c in fields]
            records = [
                {"source": INGEST_LOG.full_name, C.INGEST_RUN_ID: run, "field": c, C.VALUE: counts[c]} for c in counts
            ]
            out.append(
                (
                    "Ingest funnel",
                    hbar_chart("ingest-funnel", f"Rows of ingest run {run}", labels, values, "rows", records),
                )
            )
    if storage.exists(QUARANTINE):
        reasons = (
            storage.read(QUARANTINE).groupBy(C.REASON).count().orderBy(F.desc("count"), C.REASON).limit(20).collect()
        )
        if reasons:
            records = [{"source": QUARANTINE.full_name, C.REASON: r[0], C.VALUE: int(r[1])} for r in reasons]
            out.append(
                (
                    "Quarantine reasons",
                    hbar_chart(
                        "quarantine-reasons",
                        "Quarantined rows by reason",
                        [r[0] for r in reasons],
                        [float(r[1]) for r in reasons],
                        "rows",
                        records,
                    ),
                )
            )
    return out


def _metric_sections(storage: Storage) -> list[tuple[str, str]]:
    if not storage.exists(MODEL_METRICS):
        return []
    metrics = storage.read(MODEL_METRICS)
    out = []
    ranking = newest_run_rows(metrics, [RANKING_DATASET])
    cats, series = metric_bars(ranking, RANKING_METRICS)
    if series:
        out.append(
            (
                "Discover Weekly: last week",
                bar_chart(
                    "last-week-ranking",
                    "Every recommender on the held-out last week (newest run of each model)",
                    cats,
                    series,
                    "metric value (0-1)",
                    "Train on all weeks but the last; relevant = unheard tracks played in it.",
                ),
            )
        )
    cats, series = metric_bars(ranking, NEXT_TRACK_METRICS)
    if series:
        out.append(
            (
                "Next track",
                bar_chart(
                    "next-track",
                    "Each user's first new track of the test week: hit rate and MRR at k",
                    cats,
                    series,
                    "metric value (0-1)",
                ),
            )
        )
    rl_rows = [r for r in newest_run_rows(metrics, list(RL_WORLDS)) if r[C.MODEL].startswith("rl_policy:")]
    for metric in RL_METRICS:
        cats, series = rl_bars(rl_rows, metric)
        if series:
            out.append(
                (
                    f"Playlist policies: {metric.replace('_', ' ')}",
                    bar_chart(
                        f"rl-{metric}",
                        f"{RL_METRIC_LABELS[metric]}, per policy, learned simulator vs true listener",
                        cats,
                        series,
                        RL_METRIC_LABELS[metric],
                        "Bars: mean over the evaluation sessions; whiskers: 95% confidence interval.",
                    ),
                )
            )
    curve = newest_run_rows(metrics, [TRAINING_DATASET])
    lines: dict[str, tuple[list[float], list[float]]] = {}
    records: list[Record] = []
    for r in curve:
        xs, ys = lines.setdefault(f"{r[C.MODEL].removeprefix('rl_policy:')} {r[C.METRIC]}", ([], []))
        xs.append(float(r[C.K]))
        ys.append(float(r[C.VALUE]))
        records.append(_record(r))
    if lines:
        out.append(
            (
                "RL training curve",
                line_chart(
                    "rl-training",
                    "AH-DQN in the learned simulator: episodic return while training",
                    lines,
                    "episode",
                    "episodic return (mean over a block of episodes)",
                    records,
                ),
            )
        )
    out += _trend_sections(metrics)
    return out


def _trend_sections(metrics: DataFrame) -> list[tuple[str, str]]:
    """NDCG of each last-week model across runs, only for models with two or more runs."""
    rows = (
        metrics.where((F.col(C.DATASET) == RANKING_DATASET) & (F.col(C.METRIC) == "ndcg") & F.col(C.VALUE).isNotNull())
        .orderBy(C.CREATED_AT)
        .limit(2000)
        .collect()
    )
    by_model: dict[str, list[Row]] = {}
    for r in rows:
        by_model.setdefault(r[C.MODEL], []).append(r)
    trends = {m: rs for m, rs in by_model.items() if len(rs) >= 2}
    if not trends:
        return []
    runs = sorted(
        {r[C.RUN_ID] for rs in trends.values() for r in rs},
        key=lambda run: min(r[C.CREATED_AT] for rs in trends.values() for r in rs if r[C.RUN_ID] == run),
    )
    index = {run: i for i, run in enumerate(runs)}
    lines = {m: ([float(index[r[C.RUN_ID]]) for r in rs], [float(r[C.VALUE]) for r in rs]) for m, rs in trends.items()}
    records = [_record(r) for rs in trends.values() for r in rs]
    return [
        (
            "Trends across runs",
            line_chart(
                "ndcg-trend",
                "Last-week NDCG across runs (models with two or more runs)",
                lines,
                "run (oldest to newest)",
                "ndcg",
                records,
                x_ticks=runs,
            ),
        )
    ]


def _data_sections(storage: Storage, max_points: int, seed: int) -> list[tuple[str, str]]:
    out = []
    if storage.exists(INTERACTIONS):
        per_track = storage.read(INTERACTIONS).groupBy(C.TRACK_ID).agg(F.sum(C.PLAYS).alias("plays"))
        counts = [float(r[0]) for r in per_track.orderBy(F.desc("plays")).select("plays").limit(max_points).collect()]
        total_row = per_track.agg(F.sum("plays"), F.count("*")).first()
        total, n_tracks = (float(total_row[0] or 0), int(total_row[1] or 0)) if total_row else (0.0, 0)
        if counts:
            top10 = sum(counts[: max(1, n_tracks // 10)]) / total if total else 0.0
            out.append(
                (
                    "Popularity long tail",
                    f"<p>{n_tracks:,} tracks played; the top 10% of tracks have {top10:.0%} of all plays.</p>"
                    + line_chart(
                        "long-tail",
                        "Plays per track, most played first",
                        {"plays": (list(range(1, len(counts) + 1)), counts)},
                        "track rank",
                        "plays",
                        [{"source": INTERACTIONS.full_name, "tracks": len(counts), "max_plays": counts[0]}],
                        log_y=True,
                    ),
                )
            )
    if storage.exists(TRACK_FACTORS) and storage.exists(TASTE_CLUSTERS):
        sample = (
            storage.read(TRACK_FACTORS)
            .join(storage.read(TASTE_CLUSTERS).select(C.TRACK_ID, C.CLUSTER), C.TRACK_ID)
            .orderBy(F.xxhash64(C.TRACK_ID, F.lit(seed)))
            .limit(max_points)
            .collect()
        )
        if len(sample) >= 3:
            vectors = np.array([r[C.FEATURES] for r in sample], dtype=np.float64)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
            labels = np.array([r[C.CLUSTER] for r in sample])
            out.append(
                (
                    "Track embedding map",
                    scatter_chart(
                        "embedding-map",
                        "ALS track factors (unit length, PCA to 2-D), coloured by taste cluster",
                        pca_2d(vectors),
                        labels,
                        [{"source": TRACK_FACTORS.full_name, "points": len(sample)}],
                    ),
                )
            )
    return out


def build_report(spark: SparkSession, storage: Storage, *, max_points: int = 3000, seed: int = 0) -> str:
    """The report's HTML: each section appears when the tables it needs exist."""
    del spark  # the tables are read through storage
    sections: list[tuple[str, str]] = [("Runs and inputs", _runs_header(storage))]
    sections += _ingest_sections(storage)
    sections += _metric_sections(storage)
    sections += _data_sections(storage, max_points, seed)
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return page("spotrec report", f"<p>Generated {html.escape(generated)}.</p>", sections)


def write_report(spark: SparkSession, storage: Storage, path: str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(spark, storage))
    return out


def plotted_values(report_html: str) -> list[dict[str, Any]]:
    """Every value the report's charts plotted (the JSON blocks), e.g. to compare with the tables."""
    import json
    import re

    blocks = re.findall(r'<script type="application/json" class="plotted">(.*?)</script>', report_html, re.S)
    return [rec for b in blocks for rec in json.loads(b.replace("<\\/", "</"))]


def run(ctx: StepContext) -> StepResult:
    with ctx.tracked("report", inputs=[MODEL_METRICS, INGEST_LOG, RUNS], outputs=[]) as run_id:
        path = write_report(ctx.spark, ctx.storage, f"{ctx.cfg.storage.artifacts_dir}/report.html")
        ctx.log_artifact(path)
        ctx.say(f"[report] wrote {path}")
    return ctx.result("report", run_id)
