"""The reports' SVG charts, each with its title and the note that says how to read it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..analysis import AnalysisResult
from ..charts import Series, curve_svg, steps_svg
from ..explain import class_curves, outcome_curves
from ..greedy import PruneLog
from ..superization import Superization
from ..workspace import Workspace

# Title and explanation of each chart, in the order the reports show them.
CHART_TEXT = {
    "curve.svg": ("Entropy curve", "Mean entropy of each layer's maps along the main path (empty maps: see the "
                  "estimator), with its 95% confidence band; the dashed grey curve, where there is one, is the "
                  "control (the control images through copies of the model with shuffled weights); red points "
                  "are layers entered by a superization step."),
    "excess.svg": ("Against the control", "The model's mean entropy minus the control networks' on the same images, "
                   "with the 95% interval of one network against theirs; below 0 the model's maps are more "
                   "ordered than its shuffled copies'. Superization is a span that falls here as well as drops."),
    "steps.svg": ("Superization steps", "ΔH = H(the layer it consumes) − H(layer) on the control's images (all "
                  "images without a control): positive bars are drops, grey ticks the control's drop; red bars "
                  "are superization steps."),
    "pruning.svg": ("Pruning", "Mean entropy per layer of the original model and of the pruned one, on the "
                    "calibration images of the pruning run; the steps are in the table below."),
    "classes.svg": ("By class", "Mean curve of each class (by label where known, else by predicted class)."),
    "outcomes.svg": ("Correct against wrong", "Mean curves of correctly and wrongly classified images; the "
                     "dashed line marks the layer where they part most."),
}


@dataclass(frozen=True)
class Chart:
    file: str  # its name in the report's images/ folder
    title: str
    note: str
    svg: str


def report_charts(workspace: Workspace, result: AnalysisResult, sup: Superization,
                  pruning: PruneLog | None = None) -> list[Chart]:
    """The report's charts, in the order it shows them: curve, against the control, steps, pruning, per class,
    and correct against wrong.

    The curve and the steps run along the main path; branches off it are in the table.
    """
    main = [j for j in range(len(result.layers)) if result.flow is None or result.flow.main[j]]
    layers = [result.layers[j] for j in main]
    series = [Series(f"model (n = {sup.count})", sup.mean[main], sup.ci_low[main], sup.ci_high[main])]
    ctl = sup.control
    if ctl is not None:
        series.append(Series(f"control ({ctl.draws} shuffled copies, n = {ctl.images})", ctl.mean[main], dim=True))
    svgs = {
        "curve.svg": curve_svg(layers, series, significant=sup.significant[main]),
        "steps.svg": steps_svg(layers, sup.delta[main] if ctl is None else ctl.model_delta[main],
                               sup.significant[main], control=None if ctl is None else ctl.delta[main]),
    }
    if ctl is not None:
        half = ctl.level_half_width
        svgs["excess.svg"] = curve_svg(
            layers, [Series(f"model − control (n = {ctl.images}, {ctl.draws} networks)", ctl.excess[main],
                            ctl.excess[main] - half[main], ctl.excess[main] + half[main])],
            significant=sup.significant[main], title="Entropy against the control")
    classes = class_curves(result, workspace.class_names)
    if len(classes) > 1:
        svgs["classes.svg"] = curve_svg(
            layers, [Series(f"{name} ({c.count})", c.mean[main]) for name, c in classes.items()],
            title="Spatial entropy per layer, by class")
    outcomes = outcome_curves(result)
    if outcomes is not None and outcomes.correct.count and outcomes.wrong.count:
        parting = outcomes.parting_layer
        svgs["outcomes.svg"] = curve_svg(
            layers, [Series(f"{g.name} ({g.count})", g.mean[main], g.ci_low[main], g.ci_high[main])
                     for g in (outcomes.correct, outcomes.wrong)],
            mark=main.index(parting) if parting in main else None, title="Correct against wrong predictions")
    if pruning is not None:
        svgs["pruning.svg"] = _pruning_chart(pruning)
    return [Chart(file, title, note, svgs[file]) for file, (title, note) in CHART_TEXT.items() if file in svgs]


def _pruning_chart(log: PruneLog) -> str:
    """The entropy curves of the original and the pruned model, over the pruned layers."""
    final = log.final or log.original
    labels = log.layers if len(log.layers) == len(log.original.curve) else [str(i + 1) for i in range(len(log.original.curve))]
    return curve_svg(labels, [Series("original", np.array(log.original.curve)),
                              Series("pruned", np.array(final.curve))], title="Entropy before and after pruning")
