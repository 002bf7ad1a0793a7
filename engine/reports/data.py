"""report.json's content: every number of a report, with the settings and versions that produced it."""

from __future__ import annotations

import dataclasses
import math
import platform
from datetime import datetime, timezone

import numpy as np
import scipy
import torch

from semiotui import __version__

from ..analysis import AnalysisResult
from ..entropy import MIN_SUPPORT, PERMUTATIONS
from ..explain import accuracy, class_curves, confusion, contrast_pair, label_order_warning, largest_steps, outcome_curves
from ..greedy import PruneLog
from ..names import class_name, readable
from ..saliency import module_of
from ..superization import ALPHA, MOSTLY_EMPTY, SpanTest, Superization, networks_drop, summary
from ..workspace import Workspace


def report_data(workspace: Workspace, result: AnalysisResult, sup: Superization,
                pruning: PruneLog | None = None) -> dict:
    """Every number of the report, with the settings and versions that produced it (and a pruned model's
    `pruning` log)."""
    s = result.settings
    names = workspace.class_names
    low, high = sup.ci_low, sup.ci_high
    ctl = sup.control
    layers = []
    step_span = {span.end: span for span in sup.spans if sup.parents[span.end] == span.start}
    for j, map_name in enumerate(result.layers):
        info = workspace.index[module_of(map_name)]
        parent = sup.parents[j]
        layers.append({
            "name": map_name,
            "type": info.type,
            "output_shape": list(info.output_shape or ()),
            "parameters": info.parameters,
            "entropy": {"mean": num(sup.mean[j]), "ci95": [num(low[j]), num(high[j])]},
            "empty": int(sup.empty[j]),
            "mostly_empty": bool(sup.mostly_empty[j]),
            "parent": None if parent is None else result.layers[parent],
            "branch": result.flow is not None and not result.flow.main[j],
            "inputs": None if result.flow is None else [result.layers[i] for i in result.flow.inputs[j]],
            "delta": num(sup.delta[j]),
            "median_delta": num(sup.median_delta[j]),
            "pairs": int(sup.pairs[j]),
            "p_value": num(sup.p_value[j]),
            "drop": bool(sup.drop[j]),
            "control": None if ctl is None else {
                "entropy": num(ctl.mean[j]), "level_spread": num(ctl.level_spread[j]),
                "model_entropy": num(ctl.model_mean[j]), "excess": num(ctl.excess[j]),
                "p_level": num(ctl.p_level[j]),
                "delta": num(ctl.delta[j]), "spread": num(ctl.spread[j]),
                "model_delta": num(ctl.model_delta[j]), "pairs": int(ctl.pairs[j]), "networks": int(ctl.networks[j]),
                "p_drop": num(ctl.p_drop[j]), "p_null": num(ctl.p_null[j]),
                "drops_too": bool(step_span.get(j) is not None and networks_drop(step_span[j])),
                "empty_share": num(ctl.empty[j]),
            },
            "significant": bool(sup.significant[j]),
        })
    parents = None if result.flow is None else result.flow.parents
    steps = largest_steps(result.entropy, parents)
    outcomes = outcome_curves(result)
    pair = contrast_pair(result)
    score = accuracy(result)
    control = result.control
    return {
        "semiotui": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "scipy": scipy.__version__},
        "model": {"path": _readable_or_none(workspace.info.path), "format": workspace.info.format,
                  "arch": workspace.info.arch, "parameters": workspace.info.parameters, "classes": names,
                  "scores": result.scores},
        "settings": {
            "method": s.method, "estimator": s.estimator, "levels": s.levels, "upsample": s.upsample,
            "normalized": s.normalized, "target": s.target, "device": result.device,
            "input_size": list(workspace.spec.size), "mean": list(workspace.spec.mean),
            "std": list(workspace.spec.std), "batch_size": s.batch_size, "count_empty": s.count_empty,
            "permutations": PERMUTATIONS if s.estimator == "arrangement" else None, "min_support": MIN_SUPPORT,
            "significance": SIGNIFICANCE,
        },
        "control": None if control is None else {
            "draws": len(control.seeds), "images": len(control.rows), "seeds": control.seeds,
            "rows": list(control.rows), "sample_seed": control.settings.seed,
            "empty": [[[int(j) for j in np.flatnonzero(image)] for image in network] for network in control.empty],
            "shuffled_parameters": control.shuffled, "kept_parameters": control.kept,
            "cancelled": control.cancelled, "method": CONTROL_METHOD,
        },
        "verdict": _verdict_data(sup),
        "analysis": {"images": len(result.images), "cancelled": result.cancelled, "total": result.total,
                     "partial": result.partial, "failed": result.failed,
                     "seconds": round(result.seconds, 3), "classes": result.classes,
                     "accuracy": None if score is None else dataclasses.asdict(score)},
        "summary": summary(sup),
        "warnings": report_warnings(workspace, result, sup),
        "images": [
            {"path": r.name, "label": r.label, "label_name": class_name(names, r.label), "predicted": r.predicted,
             "predicted_name": class_name(names, r.predicted), "confidence": r.confidence, "target": r.target,
             "top5": list(r.top), "correct": None if r.label is None else r.label == r.predicted,
             "empty": [result.layers[j] for j in np.flatnonzero(result.empty[k])],
             "largest_step": result.layers[steps[k]] if steps[k] >= 0 else None}
            for k, r in enumerate(result.images)
        ],
        "confusion": confusion(result),
        "classes": {name: {"count": c.count, "curve": [num(v) for v in c.mean],
                           "ci95": [[num(a), num(b)] for a, b in zip(c.ci_low, c.ci_high)]}
                    for name, c in class_curves(result, names).items()},
        "outcomes": None if outcomes is None else {
            **{g.name: {"count": g.count, "curve": [num(v) for v in g.mean]} for g in (outcomes.correct, outcomes.wrong)},
            "parting_layer": None if outcomes.parting_layer is None else result.layers[outcomes.parting_layer],
        },
        "contrast": None if pair is None else {"wrong": result.images[pair[0]].name,
                                               "correct": result.images[pair[1]].name},
        "skipped": [{"path": p, "reason": why} for p, why in result.skipped],
        "layers": layers,
        "index": [dataclasses.asdict(info) for info in workspace.index],
        "pruning": None if pruning is None else finite(pruning.to_dict()),
    }


SIGNIFICANCE = ("superization: a span of layers along the main path over which, on the control's images, the "
                "model's entropy drops (one-sided Wilcoxon signed-rank against 0 by image, zero drops split), by "
                "more than the control networks' drops reach (prediction t-test against the networks), and whose "
                "last layer ends below the control networks' level (the same test); the first two Holm-corrected "
                "over every span along the main path, the third over the layers, all p < 0.01; no verdict where "
                f"more than {MOSTLY_EMPTY:.0%} of the model's or the control's maps are empty")
CONTROL_METHOD = ("copies of the model with each weight tensor shuffled within each output unit, each convolution's "
                  "and linear layer's output channels then matched to the mean and spread of the model's on the "
                  "control images; one seed per copy, on a seeded sample of the images spread across the classes")


def _verdict_data(sup: Superization) -> dict:
    """Every span's test, the family it was corrected in, and the finding: what the summary's claim rests on."""
    best = sup.finding
    return {
        "alpha": ALPHA,
        "family": sup.family,
        "layers_family": len(sup.layers),
        "finding": None if best is None else _span_data(sup, best),
        "spans": [_span_data(sup, span) for span in sup.spans],
    }


def _span_data(sup: Superization, span: SpanTest) -> dict:
    low, high = span.interval
    return finite({
        "start": sup.layers[span.start], "end": sup.layers[span.end], "images": span.images,
        "networks": span.networks, "drop": span.drop, "control_drop": span.null_drop,
        "control_spread": span.null_spread, "excess": span.excess, "excess_ci95": [low, high],
        "p_drop": span.p_drop, "p_beyond": span.p_null, "p_below": span.p_level,
        "untested": span.untested, "claimed": span.claimed,
    })


def report_warnings(workspace: Workspace, result: AnalysisResult, sup: Superization) -> list[str]:
    """What a reader must know before trusting the numbers: a control asked for but not made, a label order that
    looks wrong, a claim by a model no better than chance."""
    out = [f"No control: {result.no_control}; so no step is called superization."] if result.no_control else []
    order = label_order_warning(result, getattr(workspace.images, "label_source", None),
                                getattr(workspace.images, "class_names", None))
    if order:
        out.append(order)
    score = accuracy(result)
    if sup.claimed and score is not None and not score.above_chance and not score.below_chance:
        out.append(f"The model is not better than chance on these labels ({score.top1:.1%}, chance "
                   f"{score.chance:.1%}), yet its maps order themselves beyond its shuffled copies': a network "
                   "that memorises does too, so this superization is not evidence of the labelled task "
                   "(semiotui/docs/METHOD.md §3.5).")
    return out


def finite(value: object) -> object:
    """`value` with every non-finite float made None (JSON has no NaN: a layer of empty maps has no mean)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _readable_or_none(name: str | None) -> str | None:
    return None if name is None else readable(name)


def num(value: float) -> float | None:
    """JSON has no NaN: undefined numbers (one image, first layer) are null."""
    return float(value) if math.isfinite(value) else None


