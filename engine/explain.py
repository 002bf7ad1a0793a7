"""Explaining decisions with superization (METHOD.md §4): curves per class and per outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .analysis import AnalysisResult
from .stats import RunningStats
from .superization import step_drops


@dataclass
class GroupCurve:
    """Mean entropy curve of a group of images, with its 95% band."""

    name: str
    count: int
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray

    @classmethod
    def of(cls, name: str, entropy: np.ndarray) -> GroupCurve:
        stats = RunningStats.of(entropy)
        low, high = stats.ci95()
        return cls(name, stats.count, stats.mean, low, high)


@dataclass
class Outcomes:
    """Correctly against wrongly classified images, and the layer where their curves part most."""

    correct: GroupCurve
    wrong: GroupCurve
    parting_layer: int | None  # index of the largest |mean difference|; None if a group is empty


def class_curves(result: AnalysisResult, class_names: Sequence[str] | None = None) -> dict[str, GroupCurve]:
    """One curve per class: by label where every image has one, else by predicted class."""
    h = result.entropy
    by_label = bool(result.images) and all(r.label is not None for r in result.images)
    keys = np.array([r.label if by_label else r.predicted for r in result.images])
    curves = {}
    for c in sorted(set(keys.tolist())):
        name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
        curves[name] = GroupCurve.of(name, h[keys == c])
    return curves


def outcome_curves(result: AnalysisResult) -> Outcomes | None:
    """Curves of correct and wrong predictions; None when some image has no label."""
    if not result.images or any(r.label is None for r in result.images):
        return None
    h = result.entropy
    right = np.array([r.label == r.predicted for r in result.images])
    correct, wrong = GroupCurve.of("correct", h[right]), GroupCurve.of("wrong", h[~right])
    parting = None
    gap = np.abs(correct.mean - wrong.mean)
    if correct.count and wrong.count and np.isfinite(gap).any():
        parting = int(np.nanargmax(gap))
    return Outcomes(correct, wrong, parting)


def largest_steps(entropy: np.ndarray, parents: Sequence[int | None] | None = None) -> np.ndarray:
    """Per image, the index of the layer entered by its largest entropy drop along `parents`.

    -1 where an image has no step to measure (one layer, or empty maps).
    """
    drops = step_drops(entropy, parents)
    measurable = np.isfinite(drops).any(axis=1)
    best = np.argmax(np.where(np.isfinite(drops), drops, -np.inf), axis=1)
    return np.where(measurable, best, -1)


def contrast_pair(result: AnalysisResult) -> tuple[int, int] | None:
    """Positions of a misclassified image and a correct one with the same label, or None.

    The misclassified image is the most confidently wrong; its partner the most
    confidently right of its class, so the two are the clearest contrast.
    """
    labelled = [r for r in result.images if r.label is not None]
    wrong = sorted((r for r in labelled if r.predicted != r.label), key=lambda r: -r.confidence)
    for miss in wrong:
        right = [r for r in labelled if r.label == miss.label and r.predicted == r.label]
        if right:
            best = max(right, key=lambda r: r.confidence)
            position = {r.index: k for k, r in enumerate(result.images)}
            return position[miss.index], position[best.index]
    return None
