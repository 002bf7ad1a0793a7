"""Superization (METHOD.md §3): the entropy curve across layers and its significant drops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .stats import RunningStats

ALPHA = 0.01


@dataclass
class Superization:
    """Entropy curve and steps over layers `l_1 ... l_n` (forward order).

    Step arrays have one entry per layer; entry 0 (no previous layer) is NaN.
    """

    layers: list[str]
    count: int  # images
    mean: np.ndarray  # (n,) mean entropy per layer
    ci_low: np.ndarray
    ci_high: np.ndarray
    delta: np.ndarray  # mean of H(l_{i-1}) - H(l_i)
    median_delta: np.ndarray
    p_value: np.ndarray  # one-sided Wilcoxon, Holm-adjusted over the steps
    significant: np.ndarray  # bool

    @property
    def largest_step(self) -> int | None:
        """Index of the layer entered by the largest mean drop, or None."""
        if len(self.layers) < 2 or not np.isfinite(self.delta[1:]).any():
            return None
        return int(np.nanargmax(self.delta[1:])) + 1


def superization(entropy: np.ndarray, layers: Sequence[str], *, alpha: float = ALPHA) -> Superization:
    """Curve, steps and their significance from per-image entropies (images × layers).

    A step is significant when its median drop is positive and the one-sided
    Wilcoxon signed-rank test, paired by image and Holm-corrected, gives p < alpha.
    """
    h = np.asarray(entropy, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != len(layers):
        raise ValueError(f"entropy must be (images, {len(layers)} layers), got shape {h.shape}")
    n, width = h.shape
    stats = RunningStats.of(h)
    low, high = stats.ci95()
    nan = np.full(width, np.nan)
    delta, median, raw = nan.copy(), nan.copy(), nan.copy()
    if n and width > 1:
        steps = h[:, :-1] - h[:, 1:]
        delta[1:] = steps.mean(axis=0)
        median[1:] = np.median(steps, axis=0)
        raw[1:] = [_wilcoxon_greater(steps[:, i]) for i in range(width - 1)]
    p = holm(raw)
    significant = (median > 0) & (p < alpha)
    return Superization(
        layers=list(layers),
        count=n,
        mean=stats.mean if n else nan.copy(),
        ci_low=low,
        ci_high=high,
        delta=delta,
        median_delta=median,
        p_value=p,
        significant=significant,
    )


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values; NaN entries are left out and stay NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def _wilcoxon_greater(d: np.ndarray) -> float:
    """One-sided p that the drops `d` are positive; NaN when untestable (n < 2)."""
    if len(d) < 2:
        return np.nan
    if not np.any(d != 0):
        return 1.0
    from scipy import stats as scipy_stats  # imported on first use: it adds a second to start-up

    return float(scipy_stats.wilcoxon(d, alternative="greater").pvalue)
