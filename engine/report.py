"""Report folders: report.html (self-contained), report.md, report.json, entropy.csv, PNG heatmaps.

The folder is built under a temporary name beside the destination and renamed
into place at the end, so a crash never leaves half a report; an existing
report is replaced only when asked (`force`). Which folders may be written or
replaced, and how one is claimed for a run, is `engine.report_folder`.
"""

from __future__ import annotations

import base64
import dataclasses
import csv
import hashlib
import io
import json
import math
import platform
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np
import scipy
import torch
from PIL import Image
from torch import nn

from semiotui import __version__
from semiotui.themes.colormaps import overlay

from .analysis import AnalysisResult, add_maps
from .charts import Series, curve_svg, steps_svg
from .greedy import PruneLog
from .errors import InvalidValue
from .explain import accuracy, class_curves, confusion, contrast_pair, label_order_warning, largest_steps, outcome_curves
from .layers import format_shape
from .names import class_name, html_text, readable
from .report_folder import ReportClaim, claim_report_folder, report_files
from .saliency import module_of
from .entropy import MIN_SUPPORT, PERMUTATIONS
from .superization import ALPHA, MOSTLY_EMPTY, SpanTest, Superization, format_p, networks_drop, summary
from .workspace import Workspace

FORMATS = ("html", "md", "json", "csv")
MAP_PIXELS = 96  # side of a heatmap tile in the reports
DEFAULT_MAPS = 6  # images whose maps a report draws, unless told otherwise


@dataclass(frozen=True)
class _Tile:
    image: int  # index into result.images
    layer: str
    png: bytes


def write_report(
    directory: str | Path | ReportClaim,
    workspace: Workspace,
    result: AnalysisResult,
    *,
    formats: tuple[str, ...] = FORMATS,
    force: bool = False,
    screenshot_svg: str | None = None,
    pruning: PruneLog | None = None,
) -> Path:
    """Write the report of `result` into `directory` (created; replaced only with `force`, and only a report).

    `directory` may be a folder already claimed with `claim_report_folder` (checked
    before a long analysis); a path is claimed here, with the workspace's inputs.
    A pruned model's report gets its `pruning` log: the steps, and the curves before and after.
    """
    if not isinstance(directory, ReportClaim):
        with claim_report_folder(directory, force=force, inputs=workspace.inputs) as claim:
            return write_report(claim, workspace, result, formats=formats, screenshot_svg=screenshot_svg,
                                pruning=pruning)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise InvalidValue(f"unknown report format {sorted(unknown)[0]!r}; choose from {', '.join(FORMATS)}")
    if not result.images:
        raise InvalidValue("the analysis has no images; nothing to report")
    if screenshot_svg is not None:
        screenshot_svg = _offline(screenshot_svg)
    with directory.staging() as staging:
        sup = result.superization()
        data = report_data(workspace, result, sup)
        data["pruning"] = None if pruning is None else _finite(pruning.to_dict())
        tiles = _tiles(workspace, result)
        if "json" in formats:
            _write_maps(staging / "maps.npz", workspace, result)
        if "csv" in formats:
            _write_csv(staging / "entropy.csv", result)
            if result.control is not None:
                _write_control_csv(staging / "control.csv", result)
        charts = _charts(workspace, result, sup)
        if pruning is not None:
            charts["pruning.svg"] = _pruning_chart(pruning)
        if "md" in formats:
            images = staging / "images"
            images.mkdir()
            for name, svg in charts.items():
                _write_text(images / name, svg)
            for tile in tiles:
                (images / _tile_name(result, tile)).write_bytes(tile.png)
            _write_text(staging / "report.md", _markdown(data, result, tiles, charts))
        if "html" in formats:
            _write_text(staging / "report.html", _html(data, result, tiles, charts, screenshot_svg))
        if screenshot_svg is not None:
            _write_text(staging / "screenshot.svg", screenshot_svg)
        if "json" in formats:  # last, listing the others
            data["files"] = report_files(staging)
            _write_text(staging / "report.json", json.dumps(data, indent=2, allow_nan=False) + "\n")
    return directory.target


def add_contrast_maps(model: nn.Module, images, layers: list[str], result: AnalysisResult) -> tuple[int, int] | None:
    """Draw the maps of the contrast pair (a mistake beside a correct image of its class); returns the pair."""
    pair = contrast_pair(result)
    if pair is not None:
        add_maps(model, images, layers, result, pair)
    return pair


def report_data(workspace: Workspace, result: AnalysisResult, sup: Superization) -> dict:
    """Every number of the report, with the settings and versions that produced it."""
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
            "entropy": {"mean": _num(sup.mean[j]), "ci95": [_num(low[j]), _num(high[j])]},
            "empty": int(sup.empty[j]),
            "mostly_empty": bool(sup.mostly_empty[j]),
            "parent": None if parent is None else result.layers[parent],
            "branch": result.flow is not None and not result.flow.main[j],
            "inputs": None if result.flow is None else [result.layers[i] for i in result.flow.inputs[j]],
            "delta": _num(sup.delta[j]),
            "median_delta": _num(sup.median_delta[j]),
            "pairs": int(sup.pairs[j]),
            "p_value": _num(sup.p_value[j]),
            "drop": bool(sup.drop[j]),
            "control": None if ctl is None else {
                "entropy": _num(ctl.mean[j]), "level_spread": _num(ctl.level_spread[j]),
                "model_entropy": _num(ctl.model_mean[j]), "excess": _num(ctl.excess[j]),
                "p_level": _num(ctl.p_level[j]),
                "delta": _num(ctl.delta[j]), "spread": _num(ctl.spread[j]),
                "model_delta": _num(ctl.model_delta[j]), "pairs": int(ctl.pairs[j]), "networks": int(ctl.networks[j]),
                "p_drop": _num(ctl.p_drop[j]), "p_null": _num(ctl.p_null[j]),
                "drops_too": bool(step_span.get(j) is not None and networks_drop(step_span[j])),
                "empty_share": _num(ctl.empty[j]),
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
        "classes": {name: {"count": c.count, "curve": [_num(v) for v in c.mean],
                           "ci95": [[_num(a), _num(b)] for a, b in zip(c.ci_low, c.ci_high)]}
                    for name, c in class_curves(result, names).items()},
        "outcomes": None if outcomes is None else {
            **{g.name: {"count": g.count, "curve": [_num(v) for v in g.mean]} for g in (outcomes.correct, outcomes.wrong)},
            "parting_layer": None if outcomes.parting_layer is None else result.layers[outcomes.parting_layer],
        },
        "contrast": None if pair is None else {"wrong": result.images[pair[0]].name,
                                               "correct": result.images[pair[1]].name},
        "skipped": [{"path": p, "reason": why} for p, why in result.skipped],
        "layers": layers,
        "index": [dataclasses.asdict(info) for info in workspace.index],
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
ESTIMATOR_TEXT = {
    "arrangement": "arrangement entropy: the aura entropy of each map less the mean aura entropy of its own pixels "
                   f"in {PERMUTATIONS} random orders at its native resolution (docs/METHOD.md §2.1)",
    "aura": "the aura (4-neighbour co-occurrence) entropy, the paper's plain estimator (docs/METHOD.md §2)",
    "histogram": "the Shannon entropy of the grey levels (docs/METHOD.md §2)",
    "location": "the entropy of the map's mass over pixel positions (docs/METHOD.md §2)",
}


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
    return _finite({
        "start": sup.layers[span.start], "end": sup.layers[span.end], "images": span.images,
        "networks": span.networks, "drop": span.drop, "control_drop": span.null_drop,
        "control_spread": span.null_spread, "excess": span.excess, "excess_ci95": [low, high],
        "p_drop": span.p_drop, "p_beyond": span.p_null, "p_below": span.p_level,
        "untested": span.untested, "claimed": span.claimed,
    })


def terminal_summary(workspace: Workspace, result: AnalysisResult) -> tuple[list[str], list[str]]:
    """The report in a few lines for a terminal: the images and accuracy, then the finding's sentences; and
    the report's warnings."""
    sup = result.superization()
    score = accuracy(result)
    head = f"{len(result.images)} images; {_accuracy_text(None if score is None else dataclasses.asdict(score))}"
    return [head, *summary(sup)], report_warnings(workspace, result, sup)


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
                   "(docs/METHOD.md §3.5).")
    return out


def _charts(workspace: Workspace, result: AnalysisResult, sup: Superization) -> dict[str, str]:
    """The report's SVG charts by file name: curve, steps, per class, and correct against wrong.

    The curve and the steps run along the main path; branches off it are in the table.
    """
    main = [j for j in range(len(result.layers)) if result.flow is None or result.flow.main[j]]
    layers = [result.layers[j] for j in main]
    series = [Series(f"model (n = {sup.count})", sup.mean[main], sup.ci_low[main], sup.ci_high[main])]
    ctl = sup.control
    if ctl is not None:
        series.append(Series(f"control ({ctl.draws} shuffled copies, n = {ctl.images})", ctl.mean[main], dim=True))
    charts = {
        "curve.svg": curve_svg(layers, series, significant=sup.significant[main]),
        "steps.svg": steps_svg(layers, sup.delta[main] if ctl is None else ctl.model_delta[main],
                               sup.significant[main], control=None if ctl is None else ctl.delta[main]),
    }
    if ctl is not None:
        half = ctl.level_half_width
        charts["excess.svg"] = curve_svg(
            layers, [Series(f"model − control (n = {ctl.images}, {ctl.draws} networks)", ctl.excess[main],
                            ctl.excess[main] - half[main], ctl.excess[main] + half[main])],
            significant=sup.significant[main], title="Entropy against the control")
    classes = class_curves(result, workspace.class_names)
    if len(classes) > 1:
        charts["classes.svg"] = curve_svg(
            layers, [Series(f"{name} ({c.count})", c.mean[main]) for name, c in classes.items()],
            title="Spatial entropy per layer, by class")
    outcomes = outcome_curves(result)
    if outcomes is not None and outcomes.correct.count and outcomes.wrong.count:
        parting = outcomes.parting_layer
        charts["outcomes.svg"] = curve_svg(
            layers, [Series(f"{g.name} ({g.count})", g.mean[main], g.ci_low[main], g.ci_high[main])
                     for g in (outcomes.correct, outcomes.wrong)],
            mark=main.index(parting) if parting in main else None, title="Correct against wrong predictions")
    return charts


def _tiles(workspace: Workspace, result: AnalysisResult) -> list[_Tile]:
    """PNG heatmaps of the images whose maps were kept, one per layer."""
    tiles = []
    for k, r in enumerate(result.images):
        if r.maps is None:
            continue
        picture = workspace.images.image(r.index)
        size = _tile_size(picture.shape[:2])
        tiles.append(_Tile(k, "", _png(overlay(picture, None, *size))))
        for layer in result.layers:
            tiles.append(_Tile(k, layer, _png(overlay(picture, r.maps[layer], *size))))
    return tiles


def _tile_size(shape: tuple[int, int]) -> tuple[int, int]:
    h, w = shape
    scale = MAP_PIXELS / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _tile_name(result: AnalysisResult, tile: _Tile) -> str:
    """A file name for any layer name: unsafe characters (such as /) replaced, with a hash to keep names apart."""
    layer = tile.layer.replace("#", "_call") or "input"
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", layer)
    if safe != layer:
        safe += "-" + hashlib.sha1(layer.encode()).hexdigest()[:8]
    return f"image{result.images[tile.image].index:05d}_{safe}.png"


def _write_maps(path: Path, workspace: Workspace, result: AnalysisResult) -> None:
    """The kept thumbnails and their images, so `semiotui open` can draw them without the model.

    Keyed by the image's position among report.json's images, not among the files found: some may have been skipped.
    """
    arrays = {}
    for k, r in enumerate(result.images):
        if r.maps is None:
            continue
        arrays[f"{k}/input"] = workspace.images.image(r.index)
        arrays.update({f"{k}/{layer}": m.astype(np.float16) for layer, m in r.maps.items()})
    with path.open("wb") as f:
        np.savez_compressed(f, **arrays)


def _write_csv(path: Path, result: AnalysisResult) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *map(spreadsheet_text, result.layers)])
        for r in result.images:  # an empty map has no entropy: a blank cell
            writer.writerow([spreadsheet_text(r.name), *_bits(r.entropy)])


def _write_control_csv(path: Path, result: AnalysisResult) -> None:
    """The control networks' entropies: one row per network and image, blank for an empty map."""
    control = result.control
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "image", *map(spreadsheet_text, control.layers)])
        for seed, rows in zip(control.seeds, control.entropy):
            for position, values in zip(control.rows, rows):
                writer.writerow([seed, spreadsheet_text(result.images[position].name), *_bits(values)])


def _bits(values: np.ndarray) -> list[str]:
    """Entropies as CSV cells: repr() round-trips each float; an empty map (NaN) is a blank cell."""
    return [repr(float(v)) if math.isfinite(v) else "" for v in values]


def spreadsheet_text(name: str) -> str:
    """A name as a CSV text cell that no spreadsheet runs as a formula: `'` before a leading = + - @ tab or CR."""
    return readable(f"'{name}" if name.startswith(("=", "+", "-", "@", "\t", "\r")) else name)


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


def _markdown(data: dict, result: AnalysisResult, tiles: list[_Tile], charts: dict[str, str]) -> str:
    s = data["settings"]
    lines = [
        "# semiotui report",
        "",
        f"Model {_md_code(data['model']['path'] or 'bundled demo')} ({data['model']['format']}, "
        f"{data['model']['parameters']:,} parameters); {len(data['images'])} images"
        + _partial_text(data) + "; " + _accuracy_text(data["analysis"]["accuracy"]) + ".",
        f"Method **{s['method']}**, estimator **{s['estimator']}** ({s['levels']} levels, "
        f"{'input resolution' if s['upsample'] else 'native resolution'}), target {s['target']}, "
        f"device {s['device']}; {data['created']}, semiotui {data['semiotui']}.",
        "",
        *map(_md, data["summary"]),
        *[f"\n> **Warning:** {_md(w)}" for w in data["warnings"]],
    ]
    for name, (title, note) in CHART_TEXT.items():
        if name in charts:
            lines += ["", f"## {title}", "", note, "", f"![{title}](images/{name})"]
    spans = _span_rows(data)
    if spans:
        lines += ["", "## Where aggregation happens", "", _md(_span_note(data)), "",
                  "| " + " | ".join(SPAN_COLUMNS) + " |", "|---|" + "---:|" * (len(SPAN_COLUMNS) - 1)]
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in spans]
    lines += [
        "",
        "## Layers",
        "",
        LAYER_NOTE,
        "",
        "| # | " + " | ".join(LAYER_COLUMNS) + " |",
        "|---:|---|---|---|" + "---:|" * (len(LAYER_COLUMNS) - 4) + "---|",
    ]
    for i, layer in enumerate(data["layers"], start=1):
        name, kind, *numbers, verdict, significant = _layer_cells(layer)
        lines.append(f"| {i} | {_md_code(name, cell=True)} | {_md(kind)} | {' | '.join(numbers)} | "
                     f"{f'**{verdict}**' if significant else verdict} |")
    if data["pruning"]:
        lines += ["", "## Pruning steps", "", _md(_pruning_text(data["pruning"])), "",
                  "| " + " | ".join(PRUNING_COLUMNS) + " |", "|" + "---:|" * 2 + "---|" + "---:|" * 5]
        lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in _pruning_rows(data["pruning"])]
    matrix = _confusion_rows(data)
    if matrix:
        lines += ["", "## Confusion", "", CONFUSION_NOTE, "",
                  "| label \\ predicted | " + " | ".join(map(_md, matrix[0])) + " |", "|---|" + "---:|" * len(matrix[0])]
        lines += [f"| {_md(row[0])} | " + " | ".join(row[1:]) + " |" for row in matrix[1:]]
    for title, note, positions in _map_sections(data, tiles):
        lines += ["", f"## {title}", "", note, ""]
        for k in positions:
            r = data["images"][k]
            lines += [f"### {_md(r['path'])}", "", _md(_caption(r)), ""]
            lines += [f"![{_md(t.layer or 'input')}](images/{quote(_tile_name(result, t))} \"{_md(t.layer or 'input')}\")"
                      for t in tiles if t.image == k]
            lines.append("")
    if data["skipped"]:
        lines += ["", "## Skipped files", ""] + [f"- {_md_code(s['path'])}: {_md(s['reason'])}" for s in data["skipped"]]
    return "\n".join(lines) + "\n"


def _map_sections(data: dict, tiles: list[_Tile]) -> list[tuple[str, str, list[int]]]:
    """(title, note, image positions) of the map grids: the contrast pair, then the others."""
    with_maps = sorted({t.image for t in tiles})
    paths = [img["path"] for img in data["images"]]
    sections = []
    pair = data["contrast"]
    shown: list[int] = []
    if pair is not None:
        shown = [paths.index(pair["wrong"]), paths.index(pair["correct"])]
        if all(k in with_maps for k in shown):
            sections.append(("A mistake next to a correct image of its class",
                             "The most confidently misclassified image, and the most confident correct one with "
                             "the same label: where do their maps part?", shown))
    rest = [k for k in with_maps if k not in shown]
    if rest:
        sections.append(("Maps", "Each layer's saliency map over the image (brighter: more salient).", rest))
    return sections


PRUNING_COLUMNS = ("step", "layer", "kept", "channels removed", "channels left", "parameters", "MACs", "accuracy")


def _pruning_rows(log: dict) -> list[list[str]]:
    """The pruning log's steps as table cells, for both reports."""
    return [[str(step["index"]), step["layer"], "yes" if step["accepted"] else "rolled back",
             str(step["channels_removed"]), str(step["channels_left"]), f"{step['parameters']:,}",
             f"{step['macs']:,}", f"{step['accuracy']:.1%}"] for step in log["steps"]]


def _pruning_text(log: dict) -> str:
    """One sentence: what the pruning did, from what to what, and why it stopped."""
    first, last = log["original"], log["final"] or log["original"]
    return (f"Greedy pruning ({log['criterion']} criterion): {first['parameters']:,} → {last['parameters']:,} "
            f"parameters, accuracy {first['accuracy']:.1%} → {last['accuracy']:.1%}, "
            f"{sum(s['accepted'] for s in log['steps'])} of {len(log['steps'])} steps kept; "
            f"stopped: {log['stopped_because'] or 'not stopped'}.")


def _pruning_chart(log: PruneLog) -> str:
    """The entropy curves of the original and the pruned model, over the pruned layers."""
    final = log.final or log.original
    labels = log.layers if len(log.layers) == len(log.original.curve) else [str(i + 1) for i in range(len(log.original.curve))]
    return curve_svg(labels, [Series("original", np.array(log.original.curve)),
                              Series("pruned", np.array(final.curve))], title="Entropy before and after pruning")


def _finite(value: object) -> object:
    """`value` with every non-finite float made None (JSON has no NaN: a layer of empty maps has no mean)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _partial_text(data: dict) -> str:
    """" (partial: ...)" when the report covers only part of the images, else ""."""
    analysis = data["analysis"]
    why = analysis.get("partial")
    if why is None:
        return ""
    of = f" of {analysis['total']}" if analysis.get("total") else ""
    return f" (partial: {analysis['images']}{of} images, analysis {why})"


def _accuracy_text(score: dict | None) -> str:
    """A report's accuracy (as report.json holds it) in words."""
    if score is None:
        return "no labels, no accuracy"
    text = f"accuracy {score['top1']:.1%}"
    if score["top5"] is not None:
        text += f" (top-5 {score['top5']:.1%})"
    return text + f" on {score['images']} labelled images, chance {score['chance']:.1%}"


def _html(data: dict, result: AnalysisResult, tiles: list[_Tile], charts: dict[str, str], screenshot: str | None) -> str:
    s = data["settings"]
    rows = []
    for i, layer in enumerate(data["layers"], start=1):
        name, kind, shape, *numbers, verdict, significant = _layer_cells(layer)
        cells = "".join(f"<td class=n>{n}</td>" for n in numbers)
        rows.append(
            f"<tr class=\"{'sig' if significant else ''}\"><td>{i}</td><td><code>{html_text(name)}</code></td>"
            f"<td>{html_text(kind)}</td><td>{shape}</td>{cells}<td>{html_text(verdict)}</td></tr>"
        )
    pruning_html = ""
    if data["pruning"]:
        head_cells = "".join(f"<th>{html_text(c)}</th>" for c in PRUNING_COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html_text(c)}</td>" for c in row) + "</tr>"
                       for row in _pruning_rows(data["pruning"]))
        pruning_html = (f"<h2>Pruning steps</h2><p class=note>{html_text(_pruning_text(data['pruning']))}</p>"
                        f"<div class=scroll><table class=layers><tr>{head_cells}</tr>{body}</table></div>")
    matrix = _confusion_rows(data)
    confusion_html = ""
    if matrix:
        head_row = "".join(f"<th>{html_text(c)}</th>" for c in matrix[0])
        body_rows = "".join("<tr><th>" + html_text(row[0]) + "</th>" + "".join(f"<td class=n>{c}</td>" for c in row[1:])
                            + "</tr>" for row in matrix[1:])
        confusion_html = (f"<h2>Confusion</h2><p class=note>{html_text(CONFUSION_NOTE)}</p><div class=scroll>"
                          f"<table class=layers><tr><th>label \\ predicted</th>{head_row}</tr>{body_rows}</table></div>")
    grids = []
    head = "".join(f"<th>{html_text(name)}</th>" for name in ["image", "input", *result.layers])
    for title, note, positions in _map_sections(data, tiles):
        body = []
        for k in positions:
            r = data["images"][k]
            cells = "".join(
                f"<td><img src=\"data:image/png;base64,{base64.b64encode(t.png).decode()}\" "
                f"alt=\"{html_text(t.layer or 'input')}\" title=\"{html_text(t.layer or r['path'])}\"></td>"
                for t in tiles if t.image == k
            )
            body.append(f"<tr><th class=img>{html_text(r['path'])}<br><small>{html_text(_caption(r))}</small></th>{cells}</tr>")
        grids.append(f"<h2>{html_text(title)}</h2><p class=note>{html_text(note)}</p>"
                     f"<div class=scroll><table class=maps><tr>{head}</tr>{''.join(body)}</table></div>")
    sections = "".join(f"<h2>{html_text(title)}</h2><p class=note>{html_text(note)}</p>{charts[name]}"
                       for name, (title, note) in CHART_TEXT.items() if name in charts)
    spans = _span_rows(data)
    if spans:
        head_cells = "".join(f"<th>{html_text(c)}</th>" for c in SPAN_COLUMNS)
        body = "".join("<tr>" + "".join(f"<td{'' if i == 0 else ' class=n'}>{html_text(c)}</td>"
                                        for i, c in enumerate(row)) + "</tr>" for row in spans)
        sections += (f"<h2>Where aggregation happens</h2><p class=note>{html_text(_span_note(data))}</p>"
                     f"<div class=scroll><table class=layers><tr>{head_cells}</tr>{body}</table></div>")
    skipped = ""
    if data["skipped"]:
        items = "".join(f"<li><code>{html_text(x['path'])}</code>: {html_text(x['reason'])}</li>" for x in data["skipped"])
        skipped = f"<h2>Skipped files</h2><ul>{items}</ul>"
    shot = f"<h2>Interface</h2><div class=shot>{screenshot}</div>" if screenshot else ""
    model = data["model"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>semiotui report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_CSS}</style></head><body>
<header><h1>semiotui report</h1>
<p class=meta>Model <code>{html_text(model['path'] or 'bundled demo')}</code> ({html_text(model['format'])},
{model['parameters']:,} parameters) · {len(data['images'])} images<b>{html_text(_partial_text(data))}</b> · {html_text(_accuracy_text(data["analysis"]["accuracy"]))}
· method <b>{html_text(s['method'])}</b> · estimator <b>{html_text(s['estimator'])}</b> ({s['levels']} levels,
{'input' if s['upsample'] else 'native'} resolution) · target {html_text(str(s['target']))} · device {html_text(s['device'])}
· {html_text(data['created'])} · semiotui {html_text(data['semiotui'])}</p>
<p class=summary>{html_text(' '.join(data['summary']))}</p>
{''.join(f"<p class=warning><b>Warning:</b> {html_text(w)}</p>" for w in data['warnings'])}</header>
{sections}
<h2>Layers</h2><p class=note>{html_text(LAYER_NOTE)}</p><div class=scroll><table class=layers><tr><th>#</th>
{''.join(f"<th>{html_text(c)}</th>" for c in LAYER_COLUMNS)}</tr>
{''.join(rows)}</table></div>
{pruning_html}{confusion_html}{''.join(grids)}{skipped}{shot}
<footer>Entropy: {html_text(ESTIMATOR_TEXT.get(s['estimator'], s['estimator']))}; {html_text(s['significance'])};
control: {html_text(data['control']['method'] if data['control'] else 'none')}.
Every number is in report.json.</footer>
</body></html>
"""


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;max-width:1100px;margin:2em auto;padding:0 1.2em}
h1{margin:.2em 0;font-size:1.7em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em;font-size:1.25em}
.meta{color:#555;font-size:.92em}.summary{background:#f3f6fb;border-left:4px solid #4c72b0;padding:.6em .9em}
.warning{background:#fdf6e3;border-left:4px solid #d4a017;padding:.4em .9em;margin:.4em 0}
.note{color:#666;font-size:.9em;margin:.2em 0}svg{width:100%;height:auto;max-width:900px}
table{border-collapse:collapse;font-size:.88em}th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.sig td{background:#fbeaea}code{font-size:.95em}
.scroll{overflow-x:auto}table.maps td{padding:2px}table.maps img{width:96px;height:auto;image-rendering:pixelated;display:block}
table.maps th{font-weight:normal;font-size:.8em;white-space:nowrap}th.img{max-width:12em;white-space:normal!important;overflow-wrap:anywhere}
.shot svg{max-width:100%;border:1px solid #ccc}footer{margin:2.5em 0 1em;color:#777;font-size:.85em}
"""


LAYER_COLUMNS = ("layer", "type", "output", "parameters", "entropy (bits)", "95% CI", "empty", "vs control",
                 "p (below)", "ΔH", "n", "p (drop)", "ΔH control", "p (beyond)", "verdict")
LAYER_NOTE = ("entropy: mean over all images; vs control: the model's mean minus the control networks' on the "
              "control's images, p (below) its test; ΔH: mean drop from the layer it consumes over the n images "
              "tested (the control's, or all images without a control), p (drop) one-sided Wilcoxon against 0; "
              "ΔH control: the control networks' mean drop ± their spread, p (beyond) the prediction t-test of the "
              "model's drop against theirs. p-values are Holm-corrected (steps and spans together, layers apart) "
              "and shown to two digits rounded away from 0.01; a step is superization when all three are below "
              "0.01. Spans over several layers are in report.json.")
SPAN_COLUMNS = ("span", "images", "networks", "ΔH", "ΔH control", "excess (95% interval)", "p (drop)",
                "p (beyond)", "p (below)")
CONFUSION_NOTE = "Images by label (rows) and predicted class (columns); the diagonal is correct."


def _layer_cells(layer: dict) -> tuple:
    """One layer's table row, as both reports show it: name, type, shape, the numbers, the verdict, significant."""
    e, c = layer["entropy"], layer["control"]
    step = layer["parent"] is not None
    if c is None:
        delta, pairs, p_drop = layer["delta"], layer["pairs"], layer["p_value"]
        level = p_level = control = p_beyond = None
    else:
        delta, pairs, p_drop, p_beyond = c["model_delta"], c["pairs"], c["p_drop"], c["p_null"]
        level, p_level = c["excess"], c["p_level"]
        control = None if c["delta"] is None else f"{c['delta']:+.3f} ± {_fmt(c['spread'], '.2f')}"
    return (layer["name"], layer["type"], format_shape(layer["output_shape"]), f"{layer['parameters']:,}",
            _fmt(e["mean"]), f"{_fmt(e['ci95'][0])} – {_fmt(e['ci95'][1])}", str(layer["empty"]),
            _fmt(level, "+.3f"), _p(p_level), _fmt(delta, "+.3f") if step else "–", str(pairs) if step else "–",
            _p(p_drop) if step else "–", control or "–", _p(p_beyond) if step else "–",
            _verdict(layer), layer["significant"])


def _span_rows(data: dict) -> list[list[str]]:
    """The claimed spans as table cells (largest excess first); without a claim, the five closest to one."""
    spans = [s for s in data["verdict"]["spans"] if s["untested"] is None] if data.get("verdict") else []
    claimed = [s for s in spans if s["claimed"]]
    shown = claimed or sorted(spans, key=lambda s: -(s["excess"] or -math.inf))[:5]
    shown = sorted(shown, key=lambda s: -(s["excess"] or -math.inf))
    return [[f"{s['start']} → {s['end']}", str(s["images"]), str(s["networks"]), _fmt(s["drop"], "+.3f"),
             f"{_fmt(s['control_drop'], '+.3f')} ± {_fmt(s['control_spread'], '.2f')}",
             f"{_fmt(s['excess'], '+.3f')} ({_fmt(s['excess_ci95'][0], '+.2f')} to {_fmt(s['excess_ci95'][1], '+.2f')})",
             _p(s["p_drop"]), _p(s["p_beyond"]), _p(s["p_below"])] for s in shown]


def _span_note(data: dict) -> str:
    v = data["verdict"]
    claimed = sum(s["claimed"] for s in v["spans"])
    head = (f"{claimed} of the {v['family']} spans along the main path are superization"
            if claimed else f"No span of the {v['family']} along the main path is superization; the closest")
    return (f"{head} (each p < {v['alpha']}: drop and beyond Holm-corrected over the {v['family']} spans, below over "
            f"the {v['layers_family']} layers). ΔH: the model's mean drop from the first layer to the last on the "
            "control's images; excess: ΔH minus the control's, with the 95% interval of one network against theirs.")


def _p(value: float | None) -> str:
    return "–" if value is None else format_p(value)


def _verdict(layer: dict) -> str:
    c = layer["control"]
    if layer["mostly_empty"] or (c is not None and (c["empty_share"] or 0) > MOSTLY_EMPTY):
        return "mostly empty"
    if layer["branch"]:
        return "branch"
    if layer["parent"] is None:
        return ""
    if layer["significant"]:
        return "superization"
    if c is None:
        return "drop, no control" if layer["drop"] else ""
    if c["p_drop"] is not None and c["p_drop"] < ALPHA and (c["model_delta"] or 0) > 0:
        return "drop, control too" if c["drops_too"] else "drop, not beyond control"
    return ""


def _confusion_rows(data: dict) -> list[list[str]]:
    """The confusion matrix as rows of cells (a header row first), for up to 20 classes; empty otherwise."""
    cells = data["confusion"]
    if not cells:
        return []
    used = sorted({c for label, predicted, _ in cells for c in (label, predicted)})
    if len(used) > 20:
        return []
    names = data["model"]["classes"]
    title = [class_name(names, c) or str(c) for c in used]
    counts = {(a, b): n for a, b, n in cells}
    return [title] + [[title[i], *(str(counts.get((a, b), "")) for b in used)] for i, a in enumerate(used)]


# Characters Markdown gives a meaning to wherever they stand (HTML's are escaped as entities).
# What CommonMark (with tables) reads as more than text: emphasis, links, code, cells, headings, a link's
# title's end; `<` before a tag's name and `&` before an entity. A backslash escapes any of them and shows
# nothing; the rest of a sentence ("p < 0.01", "the model's") stays as written in the raw file.
_MARKDOWN_ACTIVE = re.compile(r"[\\`*_\[\]|~#\"]|<(?=[A-Za-z/!?])|&(?=#?\w+;)")


def _md(text: str) -> str:
    """Text with names from outside as literal Markdown: no HTML, link, emphasis or table cell can come of it."""
    return _MARKDOWN_ACTIVE.sub(lambda m: "\\" + m.group(0), readable(text))


def _md_code(text: str, *, cell: bool = False) -> str:
    """A name as a code span, whose content Markdown shows as written: fenced by more backticks than it holds.

    In a table `cell`, a `|` would still end the cell, and is escaped (the table reads the escape first).
    """
    text = readable(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    if cell:
        text = text.replace("|", "\\|")
    return f"{fence}{pad}{text}{pad}{fence}"


def _caption(image: dict) -> str:
    predicted = image["predicted_name"] or str(image["predicted"])
    text = f"predicted {predicted} ({image['confidence']:.0%})"
    if image["label"] is not None:
        text += f", label {image['label_name'] or image['label']}"
    return text


def _readable_or_none(name: str | None) -> str | None:
    return None if name is None else readable(name)


def _num(value: float) -> float | None:
    """JSON has no NaN: undefined numbers (one image, first layer) are null."""
    return float(value) if math.isfinite(value) else None


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def _offline(svg: str) -> str:
    """The SVG without the web fonts Rich's screenshots link to (the local font, or a monospace one, is used)."""
    return re.sub(r',\s*url\([^)]*\)\s*format\([^)]*\)', "", svg)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
