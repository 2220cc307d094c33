"""The report's charts: matplotlib figures drawn from small in-memory data, inlined as base64 PNG.

The ``report`` step (:mod:`spotrec.steps.report`) gathers the data from the tables; this module only draws.
Every chart is one ``<figure class="chart">`` holding the PNG (so the HTML file is self-contained: nothing
is fetched when the page opens) and a ``<script type="application/json" class="plotted">`` block with the
exact values it plotted, each with its source key (for ``ops.model_metrics``: run_id, model, dataset, metric,
k), so a reader or a test can check the picture against the table.

Rules every chart follows: labelled axes, the value printed on every bar, 95% CIs as error bars where the
step measured them, one scale per chart (rates and rewards never share an axis), every model of one task on
one chart.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
"""Tab10 without its cyan: distinct hues, no two greens."""
SIZE = (7.2, 3.6)
DPI = 110

Record = dict[str, Any]
"""One plotted value and where it came from (``source`` plus the table's key columns, ``value``)."""


@dataclass
class Series:
    """One bar series: a value (and optional 95% CI) per category; ``None`` leaves the bar out."""

    name: str
    values: list[float | None]
    ci: list[tuple[float, float] | None] | None = None
    records: list[Record] = field(default_factory=list)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure_html(chart_id: str, title: str, fig: Figure, records: Sequence[Record], caption: str = "") -> str:
    data = json.dumps(list(records), default=str, sort_keys=True).replace("</", "<\\/")
    return (
        f'<figure class="chart" data-chart="{html.escape(chart_id)}">'
        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{_png(fig)}">'
        f"<figcaption><b>{html.escape(title)}</b>{(' ' + html.escape(caption)) if caption else ''}</figcaption>"
        f'<script type="application/json" class="plotted">{data}</script></figure>'
    )


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 0.001 or v == 0 else f"{v:.1e}"


def bar_chart(
    chart_id: str, title: str, categories: Sequence[str], series: Sequence[Series], y_label: str, caption: str = ""
) -> str:
    """Grouped bars: one group per category, one bar per series, the value on each bar, CIs as error bars."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(categories))
    for i, s in enumerate(series):
        present = [j for j, v in enumerate(s.values) if v is not None]
        vals = np.array([s.values[j] for j in present], dtype=float)
        err = None
        if s.ci is not None:
            lo_hi = [s.ci[j] or (float(vals[p]), float(vals[p])) for p, j in enumerate(present)]
            err = np.array([[v - lo for v, (lo, _) in zip(vals, lo_hi)], [hi - v for v, (_, hi) in zip(vals, lo_hi)]])
        bars = ax.bar(
            x[present] + (i - (n - 1) / 2) * width,
            vals,
            width * 0.92,
            yerr=err,
            capsize=3,
            label=s.name,
            color=COLOURS[i % len(COLOURS)],
            error_kw={"elinewidth": 1, "ecolor": "#333"},
        )
        ax.bar_label(bars, labels=[_fmt(v) for v in vals], fontsize=7, padding=2)
    ax.set_xticks(x, categories, fontsize=8)
    ax.set_ylabel(y_label)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if series:
        ax.legend(fontsize=8, ncols=min(len(series), 4), loc="upper left", bbox_to_anchor=(0, -0.12), frameon=False)
    return _figure_html(chart_id, title, fig, [r for s in series for r in s.records], caption)


def hbar_chart(
    chart_id: str, title: str, labels: Sequence[str], values: Sequence[float], x_label: str, records: Sequence[Record]
) -> str:
    """Horizontal bars (first label on top) with each count printed, e.g. the ingest funnel."""
    fig = Figure(figsize=(SIZE[0], 0.45 * len(labels) + 1.0))
    ax = fig.add_subplot()
    y = np.arange(len(labels))[::-1]
    bars = ax.barh(y, values, color=[COLOURS[i % len(COLOURS)] for i in range(len(labels))])
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8, padding=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel(x_label)
    ax.margins(x=0.15)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return _figure_html(chart_id, title, fig, records)


def line_chart(
    chart_id: str,
    title: str,
    lines: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    x_label: str,
    y_label: str,
    records: Sequence[Record],
    *,
    log_y: bool = False,
    x_ticks: Sequence[str] | None = None,
    caption: str = "",
) -> str:
    """One line per entry of ``lines`` (name -> (x, y)), markers when a line has few points."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    for i, (name, (xs, ys)) in enumerate(lines.items()):
        ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, ms=4, lw=1.5, label=name, color=COLOURS[i % 9])
    if log_y:
        ax.set_yscale("log")
    if x_ticks is not None:
        ax.set_xticks(range(len(x_ticks)), x_ticks, fontsize=7, rotation=20, ha="right")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label + (" (log scale)" if log_y else ""))
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=8, frameon=False)
    return _figure_html(chart_id, title, fig, records, caption)


def scatter_chart(chart_id: str, title: str, xy: np.ndarray, labels: np.ndarray, records: Sequence[Record]) -> str:
    """2-D points coloured by label (e.g. track factors projected by :func:`pca_2d`, coloured by cluster)."""
    fig = Figure(figsize=(SIZE[0], SIZE[0] * 0.6))
    ax = fig.add_subplot()
    uniq = sorted(set(labels.tolist()))
    cmap = matplotlib.colormaps["tab20"]
    for i, lab in enumerate(uniq):
        mask = labels == lab
        ax.scatter(xy[mask, 0], xy[mask, 1], s=6, alpha=0.7, color=cmap(i % 20), label=str(lab))
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    if len(uniq) <= 20:
        ax.legend(title="cluster", fontsize=6, markerscale=2, ncols=2, loc="center left", bbox_to_anchor=(1, 0.5))
    return _figure_html(chart_id, title, fig, records, f"{len(xy):,} tracks sampled.")


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project onto the two leading principal components (SVD of the centred matrix)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return np.asarray(centred @ vt[:2].T)


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain HTML table (escaped)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, intro: str, sections: Sequence[tuple[str, str]]) -> str:
    """The whole HTML document: ``sections`` are (heading, body HTML) pairs."""
    body = "".join(f"<section><h2>{html.escape(h)}</h2>{b}</section>" for h, b in sections)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:860px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}"
        "figure{margin:1em 0}figure img{max-width:100%}figcaption{font-size:13px;color:#555}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{intro}{body}</body></html>"
    )
