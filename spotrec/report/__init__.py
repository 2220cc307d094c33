"""The report's plots: inline SVG drawn from small in-memory series (the ``report`` step gathers them).

Plots are inline SVG drawn here (no plotting dependency, nothing fetched when the page opens): the
popularity long tail, each model's metrics beside the baselines across runs, a 2-D map of the track
factors coloured by taste cluster, and any per-episode curves that the RL step logged.
Only small aggregates reach the driver (at most a few thousand points per plot).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np

PALETTE = ["#1db954", "#2e77d0", "#e8115b", "#ff9f1c", "#8d67ab", "#148a08", "#dc148c", "#509bf5", "#a56752", "#777"]
W, H, PAD = 640, 320, 48
PLOTTED_METRICS = ("ndcg", "map", "precision", "recall", "hit_rate", "session_reward_mean", "completion_rate_mean")
"""Ranking metrics of the recommenders and session metrics of the RL policies (ops.model_metrics)."""


def _scale(values: Sequence[float], lo_px: float, hi_px: float, *, log: bool = False) -> list[float]:
    vals = [math.log10(max(v, 1e-9)) if log else v for v in values]
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    return [lo_px + (v - lo) / span * (hi_px - lo_px) for v in vals]


def _frame(title: str, body: str, x_label: str, y_label: str) -> str:
    return (
        f'<figure><svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{html.escape(title)}">'
        f'<rect x="{PAD}" y="8" width="{W - PAD - 8}" height="{H - PAD - 8}" fill="none" stroke="#ccc"/>'
        f"{body}"
        f'<text x="{W / 2}" y="{H - 10}" text-anchor="middle" font-size="12">{html.escape(x_label)}</text>'
        f'<text x="14" y="{H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {H / 2})">'
        f"{html.escape(y_label)}</text></svg><figcaption>{html.escape(title)}</figcaption></figure>"
    )


def line_plot(
    title: str, series: Mapping[str, Sequence[float]], x_label: str, y_label: str, *, log_y: bool = False
) -> str:
    """One polyline per series over its index."""
    all_y = [y for ys in series.values() for y in ys]
    if not all_y:
        return ""
    lo, hi = min(all_y), max(all_y)
    body = ""
    for i, (name, ys) in enumerate(series.items()):
        xs = _scale(list(range(len(ys))) or [0], PAD, W - 8)
        ys_px = _scale([lo, hi, *ys], H - PAD, 8, log=log_y)[2:]
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys_px))
        colour = PALETTE[i % len(PALETTE)]
        body += f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>'
        body += f'<text x="{W - 12}" y="{20 + 14 * i}" text-anchor="end" font-size="11" fill="{colour}">'
        body += f"{html.escape(name)}</text>"
    body += f'<text x="{PAD + 4}" y="20" font-size="10">{hi:.3g}</text>'
    body += f'<text x="{PAD + 4}" y="{H - PAD - 4}" font-size="10">{lo:.3g}</text>'
    return _frame(title, body, x_label, y_label + (" (log)" if log_y else ""))


def bar_plot(title: str, groups: dict[str, dict[str, float]], y_label: str) -> str:
    """Grouped bars: one group per metric, one bar per model."""
    models = sorted({m for g in groups.values() for m in g})
    top = max([v for g in groups.values() for v in g.values()] + [1e-9])
    gw = (W - PAD - 16) / max(len(groups), 1)
    bw = gw * 0.8 / max(len(models), 1)
    body = ""
    for gi, (metric, values) in enumerate(groups.items()):
        x0 = PAD + 8 + gi * gw
        for mi, model in enumerate(models):
            v = values.get(model)
            if v is None or math.isnan(v):
                continue
            h = (H - PAD - 16) * v / top
            body += (
                f'<rect x="{x0 + mi * bw:.1f}" y="{H - PAD - h:.1f}" width="{bw * 0.9:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[mi % len(PALETTE)]}"><title>{html.escape(model)} {metric}: {v:.4f}</title></rect>'
            )
        body += f'<text x="{x0 + gw * 0.4:.1f}" y="{H - PAD + 14}" text-anchor="middle" font-size="11">'
        body += f"{html.escape(metric)}</text>"
    for mi, model in enumerate(models):
        body += f'<text x="{W - 12}" y="{20 + 14 * mi}" text-anchor="end" font-size="11" '
        body += f'fill="{PALETTE[mi % len(PALETTE)]}">{html.escape(model)}</text>'
    return _frame(title, body, "metric", y_label)


def scatter_plot(title: str, xy: np.ndarray, labels: np.ndarray) -> str:
    if len(xy) == 0:
        return ""
    xs = _scale(xy[:, 0].tolist(), PAD + 4, W - 12)
    ys = _scale(xy[:, 1].tolist(), H - PAD - 4, 12)
    body = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{PALETTE[int(c) % len(PALETTE)]}" fill-opacity="0.7"/>'
        for x, y, c in zip(xs, ys, labels)
    )
    return _frame(title, body, "PC 1", "PC 2")


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project onto the two leading principal components (SVD of the centred matrix)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return np.asarray(centred @ vt[:2].T)
