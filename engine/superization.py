"""Superization (docs/METHOD.md §3): the entropy curve across layers, its drops, and which drops are superization.

A step is the drop of entropy from a layer to the layer that consumes its
output along the main path (`engine.flow`). Empty maps have no entropy and
are left out of every test; each step is tested on the images whose two maps
both hold something, and that number is kept. A significant drop is not yet
superization: the same architecture with its weights shuffled drops too, from
resolution and structure alone. A step is superization when the model's drop
is significant, larger than the control's on the same images, and larger
than the control networks reach among themselves (see `superization`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .stats import RunningStats

ALPHA = 0.01
MOSTLY_EMPTY = 0.5  # a layer with more empty maps than this share is flagged, not read
MIN_PAIRS = 7  # fewer pairs cannot reach p < 0.01 in a one-sided signed-rank test (1/2**7 > 0.01 below)


@dataclass
class ControlSteps:
    """The steps of the control: the same images through copies of the model with shuffled weights."""

    draws: int  # control networks
    images: int  # images each of them analysed (the first ones of the analysis)
    mean: np.ndarray  # (n,) the controls' curve: mean over draws of each draw's mean entropy
    delta: np.ndarray  # (n,) the controls' mean drop into each layer
    spread: np.ndarray  # (n,) standard deviation of the draws' mean drops
    model_delta: np.ndarray  # (n,) the model's mean drop over the same images
    pairs: np.ndarray  # (n,) images in the paired test
    p_paired: np.ndarray  # model's drop minus the controls' mean drop, by image: one-sided Wilcoxon, Holm
    p_draws: np.ndarray  # model's mean drop against the draws' mean drops: prediction t-test, Holm
    empty: np.ndarray  # (n,) share of the control networks' maps that are empty


@dataclass
class Superization:
    """Entropy curve and steps over layers `l_1 ... l_n` (forward order).

    Step arrays have one entry per layer, for the step into it; layers without
    a step (the first, and branches off the main path) hold NaN.
    """

    layers: list[str]
    count: int  # images
    mean: np.ndarray  # (n,) mean entropy per layer, over its non-empty maps
    ci_low: np.ndarray
    ci_high: np.ndarray
    empty: np.ndarray  # (n,) images whose map of the layer is empty
    parents: list[int | None]  # the layer each step comes from (engine.flow)
    delta: np.ndarray  # mean of H(parent) - H(layer) over the step's pairs
    median_delta: np.ndarray
    pairs: np.ndarray  # (n,) images in the step's test: both maps non-empty
    p_value: np.ndarray  # the drop: one-sided Wilcoxon against 0, Holm-adjusted over the steps
    significant: np.ndarray  # bool: superization (needs the control)
    control: ControlSteps | None = None

    @property
    def drop(self) -> np.ndarray:
        """Steps whose drop is significant (median above 0, p < ALPHA), with or without a control."""
        return (np.nan_to_num(self.median_delta) > 0) & (np.nan_to_num(self.p_value, nan=1.0) < ALPHA)

    @property
    def mostly_empty(self) -> np.ndarray:
        """Layers whose maps are empty for more than half of the images: nothing to read there."""
        return self.empty > MOSTLY_EMPTY * max(self.count, 1)

    @property
    def largest_step(self) -> int | None:
        """Index of the layer entered by the largest mean drop, or None."""
        if not np.isfinite(self.delta).any():
            return None
        return int(np.nanargmax(self.delta))


def step_drops(entropy: np.ndarray, parents: Sequence[int | None] | None = None) -> np.ndarray:
    """Per image, the drop H(parent) - H(layer) into each layer (images × layers; NaN: no step or an empty map).

    Without `parents`, each layer's parent is the one before it.
    """
    h = np.asarray(entropy, dtype=np.float64)
    width = h.shape[-1]
    if parents is None:
        parents = [i - 1 if i else None for i in range(width)]
    out = np.full(h.shape, np.nan)
    for i, p in enumerate(parents):
        if p is not None:
            out[..., i] = h[..., p] - h[..., i]
    return out


def superization(
    entropy: np.ndarray,
    layers: Sequence[str],
    *,
    empty: np.ndarray | None = None,
    parents: Sequence[int | None] | None = None,
    control: np.ndarray | None = None,
    control_rows: Sequence[int] | None = None,
    within: tuple[float, float] = (-np.inf, np.inf),
    alpha: float = ALPHA,
) -> Superization:
    """Curve, steps and their significance from per-image entropies (images × layers, NaN: empty map).

    `control` holds the entropies of the images at `control_rows` through the
    control networks (draws × images × layers); `within` is the range entropy can take (the band is cut to
    it). A step is superization when
    (1) its drop is positive: median > 0 and a one-sided Wilcoxon signed-rank
    test paired by image gives p < alpha; (2) the drop is larger than the
    controls' mean drop on the same images (one-sided Wilcoxon on the
    differences); (3) the model's mean drop lies above the control networks'
    mean drops by more than they differ among themselves (one-sided t-test of
    one new value against the draws, t with draws - 1 degrees of freedom).
    Each family is Holm-corrected over the steps. Without a control, no step is
    called superization; the drop test alone is reported.
    """
    h = np.asarray(entropy, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != len(layers):
        raise ValueError(f"entropy must be (images, {len(layers)} layers), got shape {h.shape}")
    n, width = h.shape
    parents = list(parents) if parents is not None else [i - 1 if i else None for i in range(width)]
    stats = RunningStats.of(h)
    low, high = stats.ci95(within)
    drops = step_drops(h, parents)
    delta, median, raw = (np.full(width, np.nan) for _ in range(3))
    pairs = np.zeros(width, dtype=np.int64)
    for i in range(width):
        d = drops[:, i][np.isfinite(drops[:, i])]
        pairs[i] = len(d)
        if len(d):
            delta[i], median[i] = d.mean(), np.median(d)
            raw[i] = _wilcoxon_greater(d)
    p = holm(raw)
    steps = None
    significant = np.zeros(width, dtype=bool)
    if control is not None:
        rows = np.asarray(control_rows if control_rows is not None else range(control.shape[1]), dtype=np.int64)
        steps = _control_steps(drops[rows], np.asarray(control, dtype=np.float64), parents)
        significant = ((np.nan_to_num(median) > 0) & (np.nan_to_num(p, nan=1.0) < alpha)
                       & (np.nan_to_num(steps.p_paired, nan=1.0) < alpha)
                       & (np.nan_to_num(steps.p_draws, nan=1.0) < alpha))
    return Superization(
        layers=list(layers),
        count=n,
        mean=stats.mean if n else np.full(width, np.nan),
        ci_low=low,
        ci_high=high,
        empty=(np.asarray(empty).sum(axis=0) if empty is not None and n else np.zeros(width, dtype=np.int64)),
        parents=parents,
        delta=delta,
        median_delta=median,
        pairs=pairs,
        p_value=p,
        significant=significant,
        control=steps,
    )


def _control_steps(model_drops: np.ndarray, control: np.ndarray, parents: list[int | None]) -> ControlSteps:
    """The three-way comparison of the model's drops (images × layers) with the draws' (draws × images × layers)."""
    draws, images, width = control.shape
    drops = step_drops(control, parents)  # draws × images × layers
    per_draw = _nanmean(drops, axis=1)  # draws × layers: each network's mean drop
    per_image = _nanmean(drops, axis=0)  # images × layers: the controls' mean drop per image
    curve = _nanmean(_nanmean(control, axis=1), axis=0)
    model_mean = _nanmean(model_drops, axis=0)
    paired, by_draw = np.full(width, np.nan), np.full(width, np.nan)
    n_pairs = np.zeros(width, dtype=np.int64)
    spread = np.full(width, np.nan)
    for i in range(width):
        diff = model_drops[:, i] - per_image[:, i]
        diff = diff[np.isfinite(diff)]
        n_pairs[i] = len(diff)
        if len(diff):
            paired[i] = _wilcoxon_greater(diff)
        means = per_draw[:, i][np.isfinite(per_draw[:, i])]
        if len(means) >= 2:
            spread[i] = means.std(ddof=1)
            if np.isfinite(model_mean[i]):
                by_draw[i] = _beyond_draws(model_mean[i], means)
    return ControlSteps(draws=draws, images=images, mean=curve, delta=_nanmean(per_draw, axis=0), spread=spread,
                        model_delta=model_mean, pairs=n_pairs, p_paired=holm(paired), p_draws=holm(by_draw),
                        empty=np.isnan(control).mean(axis=(0, 1)) if draws and images else np.zeros(width))


def _beyond_draws(value: float, draws: np.ndarray) -> float:
    """One-sided p that `value` comes from above the distribution the `draws` were taken from.

    The prediction t-test: t = (value - mean) / (s * sqrt(1 + 1/k)), k - 1 degrees of freedom.
    """
    from scipy import stats as scipy_stats  # imported on first use: it adds a second to start-up

    k = len(draws)
    s = draws.std(ddof=1)
    if s == 0:
        return 0.0 if value > draws.mean() else 1.0
    t = (value - draws.mean()) / (s * np.sqrt(1 + 1 / k))
    return float(scipy_stats.t.sf(t, k - 1))


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean without NaN; NaN (without numpy's warning) where a slice has no value, as for a layer empty everywhere."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(values, axis=axis)


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
    """One-sided p that the values `d` are above 0; NaN when too few to reach ALPHA (MIN_PAIRS)."""
    if len(d) < MIN_PAIRS:
        return np.nan
    if not np.any(d != 0):
        return 1.0
    from scipy import stats as scipy_stats  # imported on first use: it adds a second to start-up

    return float(scipy_stats.wilcoxon(d, alternative="greater").pvalue)


def summary(sup: Superization) -> list[str]:
    """The finding in plain sentences, each claim with its control and its n; the reports and the interface share it."""
    steps = [i for i, p in enumerate(sup.parents) if p is not None]
    if sup.count < 2 or not steps:
        return ["One image, or one layer: only the sign and size of each step are shown; the tests need more."]
    names = lambda found: ", ".join(sup.layers[i] for i in found)  # noqa: E731
    found = [i for i in steps if sup.significant[i]]
    drops = [i for i in steps if sup.drop[i] and not sup.significant[i]]
    ctl = sup.control
    out = []
    if ctl is None:
        out.append("No control was run, so no step is called superization"
                   + (f"; significant drops (p < {ALPHA}, Holm) into {names(drops)} may come from the "
                      "architecture alone." if drops else "."))
    else:
        against = f"{ctl.draws} copies of the model with shuffled weights on its first {ctl.images} images"
        if found:
            out.append(f"Superization into {names(found)}: the drop is significant and beyond {against} "
                       f"(p < {ALPHA}, Holm).")
        else:
            out.append(f"No step is superization: no drop is significantly beyond {against}.")
        if drops:
            out.append(f"Significant drops the control networks make too (architecture and resolution, not "
                       f"learning): {names(drops)}.")
    measured = [i for i in steps if np.isfinite(sup.delta[i])]
    if measured:
        i = max(measured, key=lambda k: sup.delta[k])
        control = f", control {ctl.delta[i]:+.2f}" if ctl is not None and np.isfinite(ctl.delta[i]) else ""
        out.append(f"Largest mean drop {sup.delta[i]:+.2f} bits into {sup.layers[i]}{control}, "
                   f"over the {sup.pairs[i]} of {sup.count} images whose two maps are non-empty.")
    empty = np.flatnonzero(sup.mostly_empty)
    if len(empty):
        out.append("Mostly empty maps, nothing to read there: "
                   + ", ".join(f"{sup.layers[i]} ({sup.empty[i]} of {sup.count})" for i in empty) + ".")
    if ctl is not None:
        weak = np.flatnonzero(ctl.empty > MOSTLY_EMPTY)
        if len(weak):
            out.append("The control networks' maps are mostly empty at "
                       + ", ".join(f"{sup.layers[i]} ({ctl.empty[i]:.0%})" for i in weak)
                       + ": the control says little about the steps there.")
    return out
