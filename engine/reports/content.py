"""What every format of a report shows, computed once: report.json's data, the charts, the map tiles, and the
tables' cells and sentences that the Markdown and HTML pages both lay out."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..analysis import AnalysisResult
from ..entropy import PERMUTATIONS
from ..explain import accuracy
from ..greedy import PruneLog
from ..layers import format_shape
from ..names import class_name
from ..superization import ALPHA, MOSTLY_EMPTY, format_p, summary
from ..workspace import Workspace
from .data import report_data, report_warnings
from .figures import Chart, report_charts
from .png import Tile, map_tiles

ESTIMATOR_TEXT = {
    "arrangement": "arrangement entropy: the aura entropy of each map less the mean aura entropy of its own pixels "
                   f"in {PERMUTATIONS} random orders at its native resolution (semiotui/docs/METHOD.md §2.1)",
    "aura": "the aura (4-neighbour co-occurrence) entropy, the paper's plain estimator (semiotui/docs/METHOD.md §2)",
    "histogram": "the Shannon entropy of the grey levels (semiotui/docs/METHOD.md §2)",
    "location": "the entropy of the map's mass over pixel positions (semiotui/docs/METHOD.md §2)",
}
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
PRUNING_COLUMNS = ("step", "layer", "kept", "channels removed", "channels left", "parameters", "MACs", "accuracy")


@dataclass(frozen=True)
class LayerRow:
    """One layer's row of the layer table."""

    name: str
    type: str
    shape: str
    numbers: tuple[str, ...]  # parameters, then LAYER_COLUMNS' numeric columns
    verdict: str
    significant: bool


@dataclass(frozen=True)
class MapRow:
    """One image of a map grid: its name, a caption, and its tiles (the image, then its map at each layer)."""

    path: str
    caption: str
    tiles: list[Tile]


@dataclass(frozen=True)
class MapSection:
    title: str
    note: str
    rows: list[MapRow]


@dataclass
class Report:
    """A report's content, for every format."""

    data: dict  # report.json's content; its list of `files` is added once the others are written
    charts: list[Chart]
    tiles: list[Tile]
    layers: list[LayerRow]
    spans: list[list[str]]  # the spans' table; empty when no span was tested
    span_note: str
    confusion: list[list[str]]  # a header row, then one per label; empty past 20 classes
    maps: list[MapSection]
    pruning: list[list[str]]  # the pruning steps' table
    pruning_text: str | None  # one sentence on the pruning; None for a model that was not pruned
    partial: str  # " (partial: ...)" when the report covers part of the images, else ""
    accuracy: str  # the accuracy in words


def prepare_report(workspace: Workspace, result: AnalysisResult, pruning: PruneLog | None = None) -> Report:
    """The content of the report of `result` (of a pruned model, with its `pruning` log)."""
    sup = result.superization()
    data = report_data(workspace, result, sup, pruning)
    tiles = map_tiles(workspace, result)
    log = data["pruning"]
    return Report(
        data=data,
        charts=report_charts(workspace, result, sup, pruning),
        tiles=tiles,
        layers=[_layer_row(layer) for layer in data["layers"]],
        spans=_span_rows(data),
        span_note=_span_note(data),
        confusion=_confusion_rows(data),
        maps=_map_sections(data, tiles),
        pruning=_pruning_rows(log) if log else [],
        pruning_text=_pruning_text(log) if log else None,
        partial=_partial_text(data),
        accuracy=accuracy_text(data["analysis"]["accuracy"]),
    )


def terminal_summary(workspace: Workspace, result: AnalysisResult) -> tuple[list[str], list[str]]:
    """The report in a few lines for a terminal: the images and accuracy, then the finding's sentences; and
    the report's warnings."""
    sup = result.superization()
    score = accuracy(result)
    head = f"{len(result.images)} images; {accuracy_text(None if score is None else dataclasses.asdict(score))}"
    return [head, *summary(sup)], report_warnings(workspace, result, sup)


def fmt(value: float | None, spec: str = ".3f") -> str:
    """A number for a table cell; "–" where it is undefined."""
    return "–" if value is None else format(value, spec)


def accuracy_text(score: dict | None) -> str:
    """A report's accuracy (as report.json holds it) in words."""
    if score is None:
        return "no labels, no accuracy"
    text = f"accuracy {score['top1']:.1%}"
    if score["top5"] is not None:
        text += f" (top-5 {score['top5']:.1%})"
    return text + f" on {score['images']} labelled images, chance {score['chance']:.1%}"


def _layer_row(layer: dict) -> LayerRow:
    e, c = layer["entropy"], layer["control"]
    step = layer["parent"] is not None
    if c is None:
        delta, pairs, p_drop = layer["delta"], layer["pairs"], layer["p_value"]
        level = p_level = control = p_beyond = None
    else:
        delta, pairs, p_drop, p_beyond = c["model_delta"], c["pairs"], c["p_drop"], c["p_null"]
        level, p_level = c["excess"], c["p_level"]
        control = None if c["delta"] is None else f"{c['delta']:+.3f} ± {fmt(c['spread'], '.2f')}"
    numbers = (f"{layer['parameters']:,}", fmt(e["mean"]), f"{fmt(e['ci95'][0])} – {fmt(e['ci95'][1])}",
               str(layer["empty"]), fmt(level, "+.3f"), _p(p_level), fmt(delta, "+.3f") if step else "–",
               str(pairs) if step else "–", _p(p_drop) if step else "–", control or "–",
               _p(p_beyond) if step else "–")
    return LayerRow(layer["name"], layer["type"], format_shape(layer["output_shape"]), numbers, _verdict(layer),
                    layer["significant"])


def _span_rows(data: dict) -> list[list[str]]:
    """The claimed spans as table cells (largest excess first); without a claim, the five closest to one."""
    spans = [s for s in data["verdict"]["spans"] if s["untested"] is None] if data.get("verdict") else []
    claimed = [s for s in spans if s["claimed"]]
    shown = claimed or sorted(spans, key=lambda s: -(s["excess"] or -math.inf))[:5]
    shown = sorted(shown, key=lambda s: -(s["excess"] or -math.inf))
    return [[f"{s['start']} → {s['end']}", str(s["images"]), str(s["networks"]), fmt(s["drop"], "+.3f"),
             f"{fmt(s['control_drop'], '+.3f')} ± {fmt(s['control_spread'], '.2f')}",
             f"{fmt(s['excess'], '+.3f')} ({fmt(s['excess_ci95'][0], '+.2f')} to {fmt(s['excess_ci95'][1], '+.2f')})",
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


def _map_sections(data: dict, tiles: list[Tile]) -> list[MapSection]:
    """The map grids: the contrast pair, then the other images whose maps were kept."""
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
    return [MapSection(title, note, [_map_row(data["images"][k], [t for t in tiles if t.image == k])
                                     for k in positions])
            for title, note, positions in sections]


def _map_row(image: dict, tiles: list[Tile]) -> MapRow:
    predicted = image["predicted_name"] or str(image["predicted"])
    caption = f"predicted {predicted} ({image['confidence']:.0%})"
    if image["label"] is not None:
        caption += f", label {image['label_name'] or image['label']}"
    return MapRow(image["path"], caption, tiles)


def _pruning_rows(log: dict) -> list[list[str]]:
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


def _partial_text(data: dict) -> str:
    analysis = data["analysis"]
    why = analysis.get("partial")
    if why is None:
        return ""
    of = f" of {analysis['total']}" if analysis.get("total") else ""
    return f" (partial: {analysis['images']}{of} images, analysis {why})"
