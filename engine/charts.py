"""Small standalone SVG charts for the reports: the entropy curve and the superization steps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

WIDTH, PLOT_HEIGHT = 760, 200
MARGIN = dict(left=56, right=56, top=16)


def _scale(lo: float, hi: float, a: float, b: float):
    span = hi - lo or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    span = hi - lo or 1.0
    step = 10 ** math.floor(math.log10(span / count))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= count)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _height(labels: Sequence[str]) -> int:
    """Plot height plus room for the longest rotated layer label."""
    longest = max((len(label) for label in labels), default=0)
    return MARGIN["top"] + PLOT_HEIGHT + 16 + int(6.2 * longest * math.sin(math.radians(55)))


def _frame(labels: Sequence[str], lo: float, hi: float, ylabel: str) -> tuple[list[str], object, object]:
    """Axes, grid and rotated layer labels; returns the parts and the x / y scales."""
    x0, x1 = MARGIN["left"], WIDTH - MARGIN["right"]
    y0, y1 = MARGIN["top"] + PLOT_HEIGHT, MARGIN["top"]
    n = max(len(labels), 1)
    x = lambda i: x0 + (i + 0.5) * (x1 - x0) / n  # noqa: E731
    y = _scale(lo, hi, y0, y1)
    parts = [f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" class="plot"/>']
    for t in _ticks(lo, hi):
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y(t):.1f}" y2="{y(t):.1f}" class="grid"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y(t) + 4:.1f}" class="tick" text-anchor="end">{t:g}</text>')
    every = max(1, math.ceil(len(labels) / 40))
    for i, label in enumerate(labels):
        if i % every == 0:
            parts.append(
                f'<text transform="translate({x(i):.1f},{y0 + 8}) rotate(55)" class="tick">{escape(label)}</text>'
            )
    parts.append(
        f'<text transform="translate(14,{(y0 + y1) / 2:.0f}) rotate(-90)" class="axis" '
        f'text-anchor="middle">{escape(ylabel)}</text>'
    )
    return parts, x, y


def _svg(parts: list[str], title: str, labels: Sequence[str]) -> str:
    style = (
        ".plot{fill:#fafafa;stroke:#ccc}.grid{stroke:#e4e4e4}.tick{font:11px sans-serif;fill:#555}"
        ".axis{font:12px sans-serif;fill:#333}.band{fill:#4c72b0;opacity:.22}.mean{fill:none;stroke:#4c72b0;"
        "stroke-width:2}.one{fill:none;stroke:#dd8452;stroke-width:1.5;stroke-dasharray:4 3}"
        ".dot{fill:#4c72b0}.sig{fill:#c44e52}.bar{fill:#8c8c8c}.zero{stroke:#333}"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {_height(labels)}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title><style>{style}</style>'
        + "".join(parts)
        + "</svg>"
    )


def curve_svg(
    labels: Sequence[str],
    mean: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    significant: np.ndarray,
    *,
    image: np.ndarray | None = None,
) -> str:
    """Mean entropy per layer with its 95% band; layers entered by a significant drop in red."""
    values = np.concatenate([mean, low, high] + ([image] if image is not None else []))
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = 0.05 * (hi - lo or 1.0)
    parts, x, y = _frame(labels, lo - pad, hi + pad, "entropy (bits)")
    band = np.isfinite(low) & np.isfinite(high)
    if band.any():
        idx = np.flatnonzero(band)
        upper = " ".join(f"{x(i):.1f},{y(high[i]):.1f}" for i in idx)
        lower = " ".join(f"{x(i):.1f},{y(low[i]):.1f}" for i in idx[::-1])
        parts.append(f'<polygon points="{upper} {lower}" class="band"/>')
    parts.append(f'<polyline points="{" ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(mean))}" class="mean"/>')
    if image is not None:
        parts.append(f'<polyline points="{" ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(image))}" class="one"/>')
    for i, v in enumerate(mean):
        cls = "sig" if significant[i] else "dot"
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{4 if significant[i] else 2.5}" class="{cls}">'
                     f"<title>{escape(labels[i])}: {v:.3f} bits</title></circle>")
    return _svg(parts, "Spatial entropy per layer", labels)


def steps_svg(labels: Sequence[str], delta: np.ndarray, significant: np.ndarray) -> str:
    """ΔH into each layer as bars (positive: superization); significant steps in red."""
    finite = delta[np.isfinite(delta)]
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    hi = max(0.0, float(finite.max())) if finite.size else 1.0
    pad = 0.05 * (hi - lo or 1.0)
    parts, x, y = _frame(labels, lo - pad, hi + pad, "ΔH (bits)")
    n = max(len(labels), 1)
    width = 0.7 * (WIDTH - MARGIN["left"] - MARGIN["right"]) / n
    for i, d in enumerate(delta):
        if not np.isfinite(d):
            continue
        top, bottom = sorted((y(d), y(0.0)))
        cls = "sig" if significant[i] else "bar"
        parts.append(f'<rect x="{x(i) - width / 2:.1f}" y="{top:.1f}" width="{width:.1f}" '
                     f'height="{max(bottom - top, 0.5):.1f}" class="{cls}"><title>{escape(labels[i])}: '
                     f"ΔH = {d:+.3f} bits</title></rect>")
    parts.append(f'<line x1="{MARGIN["left"]}" x2="{WIDTH - MARGIN["right"]}" y1="{y(0.0):.1f}" '
                 f'y2="{y(0.0):.1f}" class="zero"/>')
    return _svg(parts, "Superization steps", labels)
