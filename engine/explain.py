"""Explaining decisions with superization (semiotui/docs/METHOD.md §4): curves per class and per outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest

import numpy as np
from torch import nn

from .analysis import AnalysisResult, add_maps
from .names import class_name
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
    def of(cls, name: str, entropy: np.ndarray, within: tuple[float, float] = (-np.inf, np.inf)) -> GroupCurve:
        stats = RunningStats.of(entropy)
        low, high = stats.ci95(within)
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
        name = class_name(class_names, c) or str(c)
        curves[name] = GroupCurve.of(name, h[keys == c], result.settings.entropy_range)
    return curves


def outcome_curves(result: AnalysisResult) -> Outcomes | None:
    """Curves of correct and wrong predictions; None when some image has no label."""
    if not result.images or any(r.label is None for r in result.images):
        return None
    h = result.entropy
    right = np.array([r.label == r.predicted for r in result.images])
    within = result.settings.entropy_range
    correct, wrong = GroupCurve.of("correct", h[right], within), GroupCurve.of("wrong", h[~right], within)
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


def add_contrast_maps(model: nn.Module, images, layers: list[str], result: AnalysisResult) -> tuple[int, int] | None:
    """Draw the maps of the contrast pair (a mistake beside a correct image of its class); returns the pair."""
    pair = contrast_pair(result)
    if pair is not None:
        add_maps(model, images, layers, result, pair)
    return pair


@dataclass
class Accuracy:
    """How often the model is right on the labelled images."""

    images: int  # labelled images
    top1: float
    top5: float | None  # with at least ten classes
    chance: float  # 1 / classes
    below_chance: bool  # significantly: one-sided binomial test, p < 0.01
    above_chance: bool = True  # significantly, the same test the other way


def accuracy(result: AnalysisResult) -> Accuracy | None:
    """Top-1 (and top-5) accuracy over the images with a label; None when none has one."""
    labelled = [r for r in result.images if r.label is not None]
    if not labelled or result.classes < 2:
        return None
    right = sum(r.label == r.predicted for r in labelled)
    top5 = None
    if result.classes >= 10 and all(r.top for r in labelled):
        top5 = sum(r.label in r.top[:5] for r in labelled) / len(labelled)
    chance = 1 / result.classes
    from scipy import stats as scipy_stats  # imported on first use: it adds a second to start-up

    below = scipy_stats.binomtest(right, len(labelled), chance, alternative="less").pvalue < 0.01
    above = scipy_stats.binomtest(right, len(labelled), chance, alternative="greater").pvalue < 0.01
    return Accuracy(len(labelled), right / len(labelled), top5, chance, bool(below), bool(above))


def confusion(result: AnalysisResult) -> list[list[int]]:
    """The non-zero cells of the confusion matrix: [label, predicted, images], by label then prediction."""
    counts: dict[tuple[int, int], int] = {}
    for r in result.images:
        if r.label is not None:
            counts[(r.label, r.predicted)] = counts.get((r.label, r.predicted), 0) + 1
    return [[a, b, n] for (a, b), n in sorted(counts.items())]


def label_order_warning(result: AnalysisResult, label_source: str | None, folders: Sequence[str] | None) -> str | None:
    """A warning when labels taken from sorted folder names score below chance: likely not the model's order."""
    score = accuracy(result)
    if score is None or not score.below_chance or label_source != "folders":
        return None
    shown = ", ".join(list(folders or [])[:4]) + (", ..." if folders and len(folders) > 4 else "")
    return (f"accuracy {score.top1:.1%} on {score.images} labelled images is below chance ({score.chance:.1%}): "
            f"the labels follow the sorted folder names ({shown}), which may not be the model's class order; "
            "pass the model's class names in its order with --classes")


def showcase(result: AnalysisResult, count: int) -> list[int]:
    """Positions of up to `count` images whose maps a report draws: across the classes and both outcomes.

    The most confidently wrong image first (where there is one), then round the classes (by label where
    every image has one, else by prediction), each giving its most confident correct image, then its most
    confident wrong one, and so on: a sorted folder no longer gives six images of one class.
    """
    rows = result.images
    if count <= 0 or not rows:
        return []
    by_label = all(r.label is not None for r in rows)
    order = sorted(range(len(rows)), key=lambda k: -rows[k].confidence)
    wrong = [k for k in order if rows[k].label is not None and rows[k].predicted != rows[k].label]
    queues: dict[int, list[int]] = {}
    for k in order:
        queues.setdefault(rows[k].label if by_label else rows[k].predicted, []).append(k)
    for c, members in queues.items():  # correct and wrong in turn, the most confident of each first
        right = [k for k in members if k not in wrong]
        missed = [k for k in members if k in wrong]
        queues[c] = [k for pair in zip_longest(right, missed) for k in pair if k is not None]
    picked = wrong[:1] if count >= 2 else []
    while len(picked) < min(count, len(rows)):
        for c in sorted(queues):
            queue = [k for k in queues[c] if k not in picked]
            if queue and len(picked) < count:
                picked.append(queue[0])
    return picked
