"""``spotrec report``: one self-contained HTML file with plots of what the pipeline produced.

Each section appears when the tables it needs exist; only small aggregates reach the driver (at most a few
thousand points per plot). The drawing is :mod:`spotrec.report`.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spotrec import columns as C
from spotrec.report import PLOTTED_METRICS, bar_plot, line_plot, pca_2d, scatter_plot
from spotrec.steps.base import StepContext, StepResult
from spotrec.storage import Storage
from spotrec.tables import INTERACTIONS, MODEL_METRICS, QUARANTINE, TASTE_CLUSTERS, TRACK_FACTORS


def build_report(spark: SparkSession, storage: Storage, *, max_points: int = 3000, seed: int = 0) -> str:
    """The report's HTML: each section appears when the tables it needs exist."""
    sections: list[str] = []
    if storage.exists(INTERACTIONS):
        per_track = (
            storage.read(INTERACTIONS).groupBy(C.TRACK_ID).agg(F.sum(C.PLAYS).alias("plays")).orderBy(F.desc("plays"))
        )
        counts = [float(r[0]) for r in per_track.select("plays").limit(max_points).collect()]
        total_row = storage.read(INTERACTIONS).agg(F.sum(C.PLAYS), F.countDistinct(C.TRACK_ID)).first()
        total, n_tracks = (float(total_row[0] or 0), int(total_row[1] or 0)) if total_row else (0.0, 0)
        top10 = sum(counts[: max(1, n_tracks // 10)]) / total if total else 0.0
        sections.append(
            "<h2>Popularity long tail</h2>"
            f"<p>{n_tracks:,} tracks played; the top 10% of tracks have {top10:.0%} of all plays.</p>"
            + line_plot("Plays per track, most played first", {"plays": counts}, "track rank", "plays", log_y=True)
        )
    if storage.exists(QUARANTINE):
        reasons = storage.read(QUARANTINE).groupBy(C.REASON).count().orderBy(C.REASON).collect()
        rows = "".join(f"<tr><td>{html.escape(r[0])}</td><td>{r[1]:,}</td></tr>" for r in reasons)
        sections.append(f"<h2>Quarantine</h2><table><tr><th>reason</th><th>rows</th></tr>{rows}</table>")
    if storage.exists(MODEL_METRICS):
        metrics = storage.read(MODEL_METRICS)
        runs = metrics.select(C.RUN_ID, C.DATASET, C.CREATED_AT).distinct().orderBy(C.CREATED_AT).collect()
        by_dataset: dict[str, list[str]] = {}
        for run in runs:
            by_dataset.setdefault(run[C.DATASET], []).append(run[C.RUN_ID])
        for dataset, run_ids in by_dataset.items():
            last = run_ids[-1]
            latest_rows = metrics.where((F.col(C.RUN_ID) == last) & (F.col(C.DATASET) == dataset)).collect()
            groups: dict[str, dict[str, float]] = {}
            for r in latest_rows:
                if r[C.METRIC] in PLOTTED_METRICS and r[C.VALUE] is not None:
                    groups.setdefault(r[C.METRIC], {})[r[C.MODEL]] = float(r[C.VALUE])
            if groups:
                sections.append(
                    f"<h2>Models vs baselines: {html.escape(dataset)}</h2>"
                    + bar_plot(f"Latest run {last}", groups, "value at k")
                )
            ndcg = metrics.where((F.col(C.DATASET) == dataset) & (F.col(C.METRIC) == "ndcg")).collect()
            series: dict[str, list[float]] = {}
            for run_id in run_ids:
                for r in ndcg:
                    if r[C.RUN_ID] == run_id and r[C.VALUE] is not None:
                        series.setdefault(r[C.MODEL], []).append(float(r[C.VALUE]))
            if any(len(v) > 1 for v in series.values()):
                sections.append(line_plot(f"NDCG across runs: {dataset}", series, "run", "ndcg"))
        curves = metrics.where(F.col(C.METRIC).startswith("episode/")).orderBy(C.K).collect()
        curve_series: dict[str, list[float]] = {}
        for r in curves:
            if r[C.VALUE] is not None:
                curve_series.setdefault(f"{r[C.MODEL]} {r[C.METRIC]}", []).append(float(r[C.VALUE]))
        if curve_series:
            sections.append("<h2>RL training</h2>" + line_plot("Per-episode curves", curve_series, "episode", "value"))
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
            sections.append(
                "<h2>Track embedding map</h2>"
                + scatter_plot("ALS track factors (PCA), coloured by taste cluster", pca_2d(vectors), labels)
            )
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>spotrec report</title><style>"
        "body{font-family:sans-serif;max-width:720px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 8px}"
        "figure{margin:1em 0}figcaption{font-size:13px;color:#555}</style></head><body>"
        f"<h1>spotrec report</h1><p>Generated {generated}.</p>" + "".join(sections) + "</body></html>"
    )


def write_report(spark: SparkSession, storage: Storage, path: str) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(spark, storage))
    return out


def run(ctx: StepContext) -> StepResult:
    path = write_report(ctx.spark, ctx.storage, f"{ctx.cfg.storage.artifacts_dir}/report.html")
    ctx.say(f"[report] wrote {path}")
    return ctx.result("report")
