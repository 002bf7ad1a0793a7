"""Two models on the same images, side by side: their curves, their steps, and where they differ.

The use that asked for it: a pruned model against its original. Both analyses
are paired by image: by the path below the images' folder, or by file name
(each name once on both sides) where that pairs more, as when the same files
sit in other class folders. Analyses measured differently (another method,
estimator, levels, target, input size...) differ whatever the models, so they
are compared only when asked, with the differences named first. A layer both measured differs when the
per-image entropies differ (two-sided Wilcoxon signed-rank, Holm over the
layers, p < 0.01), and a step both take differs the same way on its ΔH
**(choice)**. Empty maps are left out pair by pair, and n is kept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .analysis import AnalysisResult
from .errors import InvalidValue
from .explain import Accuracy, accuracy
from .superization import ALPHA, MIN_PAIRS, Superization, holm, step_drops
from .workspace import InputSpec

# The settings that change the numbers whatever the model; a comparison across them compares methods.
MEASURED = ("method", "estimator", "levels", "upsample", "normalized", "target", "output", "count_empty")


@dataclass
class ModelComparison:
    """Model A against model B on the images both analysed."""

    names: tuple[str, str]  # how the two are called (their files)
    parameters: tuple[int, int]
    accuracy: tuple[Accuracy | None, Accuracy | None]
    steps: tuple[Superization, Superization]  # each model's own curve, steps and verdicts
    layers: list[str]  # the maps both measured, in A's order
    images: int  # images both analysed
    mean_a: np.ndarray  # (layers,) mean entropy over the pairs
    mean_b: np.ndarray
    pairs: np.ndarray  # (layers,) images whose maps are non-empty in both
    p_value: np.ndarray  # two-sided Wilcoxon of H_a − H_b per layer, Holm-adjusted
    step_a: np.ndarray  # (layers,) mean ΔH into each layer over the pairs of its step (NaN: no common step)
    step_b: np.ndarray
    step_pairs: np.ndarray
    step_p_value: np.ndarray
    paired_by: str = "path"  # how images were paired: "path" (below the images' folder) or "file name"
    rows: list[tuple[int, int]] = field(default_factory=list)  # the pairs: (row in A, row in B)
    differences: list[str] = field(default_factory=list)  # how the two were measured differently (compared anyway)

    @property
    def differs(self) -> np.ndarray:
        return np.nan_to_num(self.p_value, nan=1.0) < ALPHA

    @property
    def step_differs(self) -> np.ndarray:
        return np.nan_to_num(self.step_p_value, nan=1.0) < ALPHA

    def summary(self) -> list[str]:
        """The comparison in plain sentences, each with its n."""
        a, b = self.names
        out = [f"Measured differently, so their numbers differ whatever the models: {'; '.join(self.differences)}."
               ] if self.differences else []
        out.append(f"{a}: {self.parameters[0]:,} parameters{_score(self.accuracy[0])}; "
                   f"{b}: {self.parameters[1]:,} parameters{_score(self.accuracy[1])}; {self.images} images in "
                   f"common (paired by {self.paired_by}).")
        differ = [self.layers[j] for j in np.flatnonzero(self.differs)]
        if differ:
            out.append(f"Their entropy differs (p < {ALPHA}, paired by image, Holm) at {', '.join(differ)}.")
        else:
            out.append(f"Their entropy does not differ significantly at any of the {len(self.layers)} layers "
                       "both measured.")
        steps = [self.layers[j] for j in np.flatnonzero(self.step_differs)]
        if steps:
            out.append(f"Their drop differs into {', '.join(steps)}.")
        found = [f"{name}: {_finding(s)}" for name, s in zip(self.names, self.steps) if s.control is not None]
        if found:
            out.append("Superization against each one's control: " + "; ".join(found) + ".")
        return out


def _finding(s: Superization) -> str:
    """Where one model's aggregation happens (semiotui/docs/METHOD.md §3.4), in a few words."""
    best = s.finding
    if best is None:
        return "none"
    return f"{s.layers[best.start]} → {s.layers[best.end]} ({best.excess:+.2f} bits beyond its control)"


def compare(a: AnalysisResult, b: AnalysisResult, names: tuple[str, str], parameters: tuple[int, int], *,
            specs: tuple[InputSpec, InputSpec] | None = None, force: bool = False) -> ModelComparison:
    """Pair the two analyses by image and test each common layer and step.

    `specs` (how each model's images were prepared) adds the input size, mean and std to the settings
    compared; analyses measured differently are refused unless `force`.
    """
    method, preprocessing = measured_differently(a, b, specs)
    if method and not force:
        raise InvalidValue(f"the two analyses were measured differently ({'; '.join(method)}), so their "
                           "entropies differ whatever the models; analyse both the same way, or pass `force` "
                           "to compare them anyway")
    rows, paired_by = pair_images(a, b)
    if len(rows) < 2:
        raise InvalidValue(f"the two analyses have {len(rows)} image{'' if len(rows) == 1 else 's'} in common "
                           f"({len(a.images)} and {len(b.images)} analysed); images are paired by their path "
                           "below the images' folder, or by file name where each name is unique on both sides")
    common = [name for name in a.layers if name in b.layers]
    if not common:
        raise ValueError("the two models measure no layer of the same name: there is nothing to pair")
    ia, ib = [a.layers.index(n) for n in common], [b.layers.index(n) for n in common]
    ha = a.entropy[[k for k, _ in rows]][:, ia]
    hb = b.entropy[[k for _, k in rows]][:, ib]
    parents = _common_parents(a, common)
    da, db = step_drops(ha, parents), step_drops(hb, parents)
    mean_a, mean_b, pairs, raw = _paired(ha, hb)
    step_a, step_b, step_pairs, step_raw = _paired(da, db)
    return ModelComparison(
        names=names, parameters=parameters, accuracy=(accuracy(a), accuracy(b)),
        steps=(a.superization(), b.superization()), layers=common, images=len(rows),
        mean_a=mean_a, mean_b=mean_b, pairs=pairs, p_value=holm(raw),
        step_a=step_a, step_b=step_b, step_pairs=step_pairs, step_p_value=holm(step_raw),
        paired_by=paired_by, rows=rows, differences=method + preprocessing,
    )


def pair_images(a: AnalysisResult, b: AnalysisResult) -> tuple[list[tuple[int, int]], str]:
    """The rows of A and B that show the same image, and how they were paired ("path" or "file name").

    By path below the images' folder; by file name instead where that pairs more (the same files under other
    class folders), leaving out a name that occurs more than once on either side, which would be a guess.
    """
    by_path = _matched([row.name for row in a.images], [row.name for row in b.images])
    by_file = _matched([_file(row.name) for row in a.images], [_file(row.name) for row in b.images])
    return (by_file, "file name") if len(by_file) > len(by_path) else (by_path, "path")


def _matched(x: list[str], y: list[str]) -> list[tuple[int, int]]:
    """Positions of the names found once in `x` and once in `y`, in `x`'s order."""
    once_x, once_y = Counter(x), Counter(y)
    where = {name: k for k, name in enumerate(y) if once_y[name] == 1}
    return [(k, where[name]) for k, name in enumerate(x) if once_x[name] == 1 and name in where]


def _file(name: str) -> str:
    return name.replace("\\", "/").rpartition("/")[2]


def measured_differently(a: AnalysisResult, b: AnalysisResult, specs: tuple[InputSpec, InputSpec] | None = None
                         ) -> tuple[list[str], list[str]]:
    """What differs between how the two analyses were made, each as "name A vs B": the settings that change
    the numbers whatever the models (method, ..., input size), and each model's own preprocessing (mean, std)."""
    method = [(name.replace("_", " "), getattr(a.settings, name), getattr(b.settings, name)) for name in MEASURED]
    preprocessing = []
    if specs is not None:
        method.append(("input size", "x".join(map(str, specs[0].size)), "x".join(map(str, specs[1].size))))
        preprocessing = [("mean", specs[0].mean, specs[1].mean), ("std", specs[0].std, specs[1].std)]
    return tuple([f"{name} {_setting(x)} vs {_setting(y)}" for name, x, y in part if x != y]
                 for part in (method, preprocessing))


def _setting(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:g}" for v in value) + ")"
    return "none" if value is None else str(value)


def _common_parents(a: AnalysisResult, common: list[str]) -> list[int | None]:
    """A's steps among the common layers: each layer's parent on A's main path, when both layers are common."""
    if a.flow is None:
        return [i - 1 if i else None for i in range(len(common))]
    position = {name: j for j, name in enumerate(common)}
    out: list[int | None] = []
    for name in common:
        parent = a.flow.parents[a.layers.index(name)]
        out.append(position.get(a.layers[parent]) if parent is not None else None)
    return out


def _paired(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column, over the rows where both are finite: the two means, the count, and a two-sided Wilcoxon p."""
    from scipy import stats as scipy_stats  # imported on first use: it adds a second to start-up

    width = x.shape[1]
    mx, my, p = (np.full(width, np.nan) for _ in range(3))
    n = np.zeros(width, dtype=np.int64)
    for j in range(width):
        both = np.isfinite(x[:, j]) & np.isfinite(y[:, j])
        n[j] = both.sum()
        if n[j]:
            mx[j], my[j] = x[both, j].mean(), y[both, j].mean()
        d = x[both, j] - y[both, j]
        if n[j] > MIN_PAIRS:  # two-sided: one pair more than one-sided to reach p < 0.01 at all
            p[j] = 1.0 if not np.any(d != 0) else float(scipy_stats.wilcoxon(d).pvalue)
    return mx, my, n, p


def _score(score: Accuracy | None) -> str:
    return "" if score is None else f", accuracy {score.top1:.1%}"
