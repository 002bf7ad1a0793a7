"""Small standalone SVG charts for the reports: the entropy curve and the superization steps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .names import html_text

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
                f'<text transform="translate({x(i):.1f},{y0 + 8}) rotate(55)" class="tick">{html_text(label)}</text>'
            )
    parts.append(
        f'<text transform="translate(14,{(y0 + y1) / 2:.0f}) rotate(-90)" class="axis" '
        f'text-anchor="middle">{html_text(ylabel)}</text>'
    )
    return parts, x, y


def _svg(parts: list[str], title: str, labels: Sequence[str]) -> str:
    style = (
        ".plot{fill:#fafafa;stroke:#ccc}.grid{stroke:#e4e4e4}.tick{font:11px sans-serif;fill:#555}"
        ".axis{font:12px sans-serif;fill:#333}.band{opacity:.2}.mean{fill:none;stroke-width:2}"
        ".sig{fill:#c44e52}.bar{fill:#8c8c8c}.zero{stroke:#333}.mark{stroke:#333;stroke-dasharray:3 3}"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {_height(labels)}" role="img" '
        f'aria-label="{html_text(title)}"><title>{html_text(title)}</title><style>{style}</style>'
        + "".join(parts)
        + "</svg>"
    )


@dataclass
class Series:
    """One curve over the layers, with an optional 95% band."""

    name: str
    mean: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    dim: bool = False  # a reference (the control): grey and dashed


DIM = "#a0a0a0"
COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974",
           "#64b5cd")


def curve_svg(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    significant: np.ndarray | None = None,
    mark: int | None = None,
    title: str = "Spatial entropy per layer",
    ylabel: str = "entropy (bits)",
) -> str:
    """Entropy curves over the layers with their bands; significant drops in red; `mark` a layer."""
    arrays = [a for one in series for a in (one.mean, one.low, one.high) if a is not None]
    values = np.concatenate(arrays) if arrays else np.zeros(0)
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = 0.05 * (hi - lo or 1.0)
    parts, x, y = _frame(labels, lo - pad, hi + pad, ylabel)
    if mark is not None:
        parts.append(f'<line x1="{x(mark):.1f}" x2="{x(mark):.1f}" y1="{MARGIN["top"]}" '
                     f'y2="{MARGIN["top"] + PLOT_HEIGHT}" class="mark"/>')
    for k, one in enumerate(series):
        colour = DIM if one.dim else COLOURS[k % len(COLOURS)]
        if one.low is not None and one.high is not None:
            idx = np.flatnonzero(np.isfinite(one.low) & np.isfinite(one.high))
            if idx.size:
                upper = " ".join(f"{x(i):.1f},{y(one.high[i]):.1f}" for i in idx)
                lower = " ".join(f"{x(i):.1f},{y(one.low[i]):.1f}" for i in idx[::-1])
                parts.append(f'<polygon points="{upper} {lower}" class="band" style="fill:{colour}"/>')
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(one.mean) if np.isfinite(v))
        dash = ";stroke-dasharray:5 4" if one.dim else ""
        parts.append(f'<polyline points="{points}" class="mean" style="stroke:{colour}{dash}"/>')
        for i, v in enumerate(one.mean):
            if not np.isfinite(v):
                continue
            sig = significant is not None and k == 0 and bool(significant[i])
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{4 if sig else 2.5}" '
                         f'style="fill:{"#c44e52" if sig else colour}"><title>{html_text(one.name)} · '
                         f"{html_text(labels[i])}: {v:.3f} bits</title></circle>")
    if len(series) > 1:
        lx, ly = MARGIN["left"] + 10, MARGIN["top"] + 14
        for k, one in enumerate(series):
            room = 24 + 6.2 * len(one.name)  # swatch, gap and the name at 11px
            if lx + room > WIDTH - MARGIN["right"] and lx > MARGIN["left"] + 10:
                lx, ly = MARGIN["left"] + 10, ly + 16
            parts.append(f'<rect x="{lx}" y="{ly - 8}" width="14" height="4" '
                         f'style="fill:{DIM if one.dim else COLOURS[k % len(COLOURS)]}"/>'
                         f'<text x="{lx + 18}" y="{ly - 2}" class="tick">{html_text(one.name)}</text>')
            lx += room + 12
    return _svg(parts, title, labels)


def steps_svg(labels: Sequence[str], delta: np.ndarray, significant: np.ndarray,
              control: np.ndarray | None = None) -> str:
    """ΔH into each layer as bars (positive: a drop); superization in red; the control's drop as grey ticks."""
    both = delta if control is None else np.concatenate([delta, control])
    finite = both[np.isfinite(both)]
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
                     f'height="{max(bottom - top, 0.5):.1f}" class="{cls}"><title>{html_text(labels[i])}: '
                     f"ΔH = {d:+.3f} bits</title></rect>")
    for i, d in enumerate(control if control is not None else []):
        if np.isfinite(d):
            parts.append(f'<line x1="{x(i) - width / 2 - 3:.1f}" x2="{x(i) + width / 2 + 3:.1f}" y1="{y(d):.1f}" '
                         f'y2="{y(d):.1f}" style="stroke:{DIM};stroke-width:3"><title>{html_text(labels[i])}: '
                         f"control ΔH = {d:+.3f} bits</title></line>")
    parts.append(f'<line x1="{MARGIN["left"]}" x2="{WIDTH - MARGIN["right"]}" y1="{y(0.0):.1f}" '
                 f'y2="{y(0.0):.1f}" class="zero"/>')
    return _svg(parts, "Superization steps", labels)
