"""Report folders: report.html (self-contained), report.md, report.json, entropy.csv, PNG heatmaps.

The folder is built under a temporary name beside the destination and renamed
into place at the end, so a crash never leaves half a report, and an existing
report is replaced only when asked (`force`).
"""

from __future__ import annotations

import base64
import dataclasses
import csv
import io
import json
import math
import platform
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
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
from .explain import class_curves, contrast_pair, largest_steps, outcome_curves
from .names import readable
from .superization import Superization
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
    directory: str | Path,
    workspace: Workspace,
    result: AnalysisResult,
    *,
    formats: tuple[str, ...] = FORMATS,
    force: bool = False,
    screenshot_svg: str | None = None,
) -> Path:
    """Write the report of `result` into `directory` (created; replaced only with `force`)."""
    target = check_report_folder(directory, force=force)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown report format {sorted(unknown)[0]!r}; choose from {', '.join(FORMATS)}")
    if not result.images:
        raise ValueError("the analysis has no images; nothing to report")
    if screenshot_svg is not None:
        screenshot_svg = _offline(screenshot_svg)
    parent = target.absolute().parent
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    except OSError as exc:
        raise PermissionError(f"cannot write into {parent}: {exc.strerror or exc}") from None
    try:
        sup = result.superization()
        data = report_data(workspace, result, sup)
        tiles = _tiles(workspace, result)
        if "json" in formats:
            _write_text(staging / "report.json", json.dumps(data, indent=2, allow_nan=False) + "\n")
            _write_maps(staging / "maps.npz", workspace, result)
        if "csv" in formats:
            _write_csv(staging / "entropy.csv", result)
        charts = _charts(workspace, result, sup)
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
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def check_report_folder(directory: str | Path, *, force: bool = False) -> Path:
    """The report folder as a path, or an error saying why a report cannot be written there."""
    target = Path(directory)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())) and not force:
        raise FileExistsError(f"{target} already exists; choose another folder or pass --force to replace it")
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file, not a folder; choose another name")
    parent = target.absolute().parent
    if not parent.exists():
        raise FileNotFoundError(f"cannot write {target}: the folder {parent} does not exist")
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {target}: {parent} is not a folder")
    return target


def add_contrast_maps(model: nn.Module, images, layers: list[str], result: AnalysisResult) -> None:
    """Draw the maps of the contrast pair (a mistake beside a correct image of its class) if it has none."""
    pair = contrast_pair(result)
    if pair is not None:
        add_maps(model, images, layers, result, pair)


def report_data(workspace: Workspace, result: AnalysisResult, sup: Superization) -> dict:
    """Every number of the report, with the settings and versions that produced it."""
    s = result.settings
    names = workspace.class_names
    low, high = sup.ci_low, sup.ci_high
    layers = []
    for j, map_name in enumerate(result.layers):
        info = workspace.index[map_name.partition("#")[0]]
        layers.append({
            "name": map_name,
            "type": info.type,
            "output_shape": list(info.output_shape or ()),
            "parameters": info.parameters,
            "entropy": {"mean": _num(sup.mean[j]), "ci95": [_num(low[j]), _num(high[j])]},
            "delta": _num(sup.delta[j]),
            "median_delta": _num(sup.median_delta[j]),
            "p_value": _num(sup.p_value[j]),
            "significant": bool(sup.significant[j]),
        })
    steps = largest_steps(result.entropy)
    outcomes = outcome_curves(result)
    pair = contrast_pair(result)
    return {
        "semiotui": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "numpy": np.__version__, "scipy": scipy.__version__},
        "model": {"path": _readable_or_none(workspace.info.path), "format": workspace.info.format, "arch": workspace.info.arch,
                  "parameters": workspace.info.parameters, "classes": names},
        "settings": {
            "method": s.method, "estimator": s.estimator, "levels": s.levels, "upsample": s.upsample,
            "normalized": s.normalized, "target": s.target, "device": result.device,
            "input_size": list(workspace.spec.size), "mean": list(workspace.spec.mean),
            "std": list(workspace.spec.std), "batch_size": s.batch_size,
            "significance": "one-sided Wilcoxon signed-rank, Holm-corrected, p < 0.01",
        },
        "analysis": {"images": len(result.images), "cancelled": result.cancelled,
                     "seconds": round(result.seconds, 3)},
        "images": [
            {"path": r.name, "label": r.label, "label_name": _class(names, r.label), "predicted": r.predicted,
             "predicted_name": _class(names, r.predicted), "confidence": r.confidence, "target": r.target,
             "correct": None if r.label is None else r.label == r.predicted,
             "largest_step": result.layers[steps[k]] if steps[k] >= 0 else None}
            for k, r in enumerate(result.images)
        ],
        "classes": {name: {"count": c.count, "curve": [_num(v) for v in c.mean],
                           "ci95": [[_num(a), _num(b)] for a, b in zip(c.ci_low, c.ci_high)]}
                    for name, c in class_curves(result, names).items()},
        "outcomes": None if outcomes is None else {
            **{g.name: {"count": g.count, "curve": [_num(v) for v in g.mean]} for g in (outcomes.correct, outcomes.wrong)},
            "parting_layer": None if outcomes.parting_layer is None else result.layers[outcomes.parting_layer],
        },
        "contrast": None if pair is None else {"wrong": result.images[pair[0]].name,
                                               "correct": result.images[pair[1]].name},
        "skipped": [{"path": p, "reason": why} for p, why in getattr(workspace.images, "skipped", [])],
        "layers": layers,
        "index": [dataclasses.asdict(info) for info in workspace.index],
    }


def _charts(workspace: Workspace, result: AnalysisResult, sup: Superization) -> dict[str, str]:
    """The report's SVG charts by file name: curve, steps, per class, and correct against wrong."""
    layers = result.layers
    charts = {
        "curve.svg": curve_svg(layers, [Series("all images", sup.mean, sup.ci_low, sup.ci_high)],
                               significant=sup.significant),
        "steps.svg": steps_svg(layers, sup.delta, sup.significant),
    }
    classes = class_curves(result, workspace.class_names)
    if len(classes) > 1:
        charts["classes.svg"] = curve_svg(
            layers, [Series(f"{name} ({c.count})", c.mean) for name, c in classes.items()],
            title="Spatial entropy per layer, by class")
    outcomes = outcome_curves(result)
    if outcomes is not None and outcomes.correct.count and outcomes.wrong.count:
        charts["outcomes.svg"] = curve_svg(
            layers, [Series(f"{g.name} ({g.count})", g.mean, g.ci_low, g.ci_high)
                     for g in (outcomes.correct, outcomes.wrong)],
            mark=outcomes.parting_layer, title="Correct against wrong predictions")
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
    layer = tile.layer.replace("#", "_call") or "input"
    return f"image{result.images[tile.image].index:05d}_{layer}.png"


def _write_maps(path: Path, workspace: Workspace, result: AnalysisResult) -> None:
    """The kept thumbnails and their images, so `semiotui open` can draw them without the model."""
    arrays = {}
    for r in result.images:
        if r.maps is None:
            continue
        arrays[f"{r.index}/input"] = workspace.images.image(r.index)
        arrays.update({f"{r.index}/{layer}": m.astype(np.float16) for layer, m in r.maps.items()})
    with path.open("wb") as f:
        np.savez_compressed(f, **arrays)


def _write_csv(path: Path, result: AnalysisResult) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *map(spreadsheet_text, result.layers)])
        for r in result.images:
            writer.writerow([spreadsheet_text(r.name), *(repr(float(v)) for v in r.entropy)])


def spreadsheet_text(name: str) -> str:
    """A name as a CSV text cell that no spreadsheet runs as a formula: `'` before a leading = + - @ tab or CR."""
    return readable(f"'{name}" if name.startswith(("=", "+", "-", "@", "\t", "\r")) else name)


# Title and explanation of each chart, in the order the reports show them.
CHART_TEXT = {
    "curve.svg": ("Entropy curve", "Mean spatial entropy of each layer's map with its 95% confidence band; "
                  "red points are layers entered by a significant drop (superization)."),
    "steps.svg": ("Superization steps", "ΔH = H(previous layer) − H(layer): positive bars are drops; "
                  "significant ones in red."),
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
        + (" (analysis cancelled: partial)" if result.cancelled else "") + ".",
        f"Method **{s['method']}**, estimator **{s['estimator']}** ({s['levels']} levels, "
        f"{'input resolution' if s['upsample'] else 'native resolution'}), target {s['target']}, "
        f"device {s['device']}; {data['created']}, semiotui {data['semiotui']}.",
        "",
        *_summary(data, _md_code),
    ]
    for name, (title, note) in CHART_TEXT.items():
        if name in charts:
            lines += ["", f"## {title}", "", note, "", f"![{title}](images/{name})"]
    lines += [
        "",
        "## Layers",
        "",
        "| # | layer | type | output | parameters | entropy (bits) | 95% CI | ΔH | p (Holm) | significant |",
        "|---:|---|---|---|---:|---:|---|---:|---:|:---:|",
    ]
    for i, layer in enumerate(data["layers"], start=1):
        name, kind, *numbers, significant = _layer_cells(layer)
        lines.append(f"| {i} | {_md_code(name)} | {_md(kind)} | {' | '.join(numbers)} | "
                     f"{'**yes**' if significant else ''} |")
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


def _summary(data: dict, code: Callable[[str], str]) -> list[str]:
    """One or two sentences naming the significant steps and the largest drop (each name as `code` shows it)."""
    layers = data["layers"]
    significant = [layer["name"] for layer in layers if layer["significant"]]
    deltas = [(layer["delta"], layer["name"]) for layer in layers if layer["delta"] is not None]
    out = []
    if significant:
        out.append("Significant superization (entropy drops, p < 0.01 after Holm correction) into: "
                   + ", ".join(map(code, significant)) + ".")
    elif len(data["images"]) > 1:
        out.append("No step is a significant superization at p < 0.01 (Holm-corrected).")
    if deltas:
        d, name = max(deltas)
        out.append(f"Largest mean drop: {d:+.3f} bits into {code(name)}.")
    return [" ".join(out)]


def _html(data: dict, result: AnalysisResult, tiles: list[_Tile], charts: dict[str, str], screenshot: str | None) -> str:
    s = data["settings"]
    rows = []
    for i, layer in enumerate(data["layers"], start=1):
        name, kind, shape, *numbers, significant = _layer_cells(layer)
        cells = "".join(f"<td class=n>{n}</td>" for n in numbers)
        rows.append(
            f"<tr class=\"{'sig' if significant else ''}\"><td>{i}</td><td><code>{escape(name)}</code></td>"
            f"<td>{escape(kind)}</td><td>{shape}</td>{cells}<td>{'yes' if significant else ''}</td></tr>"
        )
    grids = []
    head = "".join(f"<th>{escape(name)}</th>" for name in ["image", "input", *result.layers])
    for title, note, positions in _map_sections(data, tiles):
        body = []
        for k in positions:
            r = data["images"][k]
            cells = "".join(
                f"<td><img src=\"data:image/png;base64,{base64.b64encode(t.png).decode()}\" "
                f"alt=\"{escape(t.layer or 'input')}\" title=\"{escape(t.layer or r['path'])}\"></td>"
                for t in tiles if t.image == k
            )
            body.append(f"<tr><th class=img>{escape(r['path'])}<br><small>{escape(_caption(r))}</small></th>{cells}</tr>")
        grids.append(f"<h2>{escape(title)}</h2><p class=note>{escape(note)}</p>"
                     f"<div class=scroll><table class=maps><tr>{head}</tr>{''.join(body)}</table></div>")
    sections = "".join(f"<h2>{escape(title)}</h2><p class=note>{escape(note)}</p>{charts[name]}"
                       for name, (title, note) in CHART_TEXT.items() if name in charts)
    skipped = ""
    if data["skipped"]:
        items = "".join(f"<li><code>{escape(x['path'])}</code>: {escape(x['reason'])}</li>" for x in data["skipped"])
        skipped = f"<h2>Skipped files</h2><ul>{items}</ul>"
    shot = f"<h2>Interface</h2><div class=shot>{screenshot}</div>" if screenshot else ""
    model = data["model"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>semiotui report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{_CSS}</style></head><body>
<header><h1>semiotui report</h1>
<p class=meta>Model <code>{escape(model['path'] or 'bundled demo')}</code> ({escape(model['format'])},
{model['parameters']:,} parameters) · {len(data['images'])} images{' · <b>cancelled: partial</b>' if result.cancelled else ''}
· method <b>{escape(s['method'])}</b> · estimator <b>{escape(s['estimator'])}</b> ({s['levels']} levels,
{'input' if s['upsample'] else 'native'} resolution) · target {escape(str(s['target']))} · device {escape(s['device'])}
· {escape(data['created'])} · semiotui {escape(data['semiotui'])}</p>
<p class=summary>{escape(' '.join(_summary(data, str)))}</p></header>
{sections}
<h2>Layers</h2><div class=scroll><table class=layers><tr><th>#</th><th>layer</th><th>type</th><th>output</th>
<th>parameters</th><th>entropy (bits)</th><th>95% CI</th><th>ΔH</th><th>p (Holm)</th><th>significant</th></tr>
{''.join(rows)}</table></div>
{''.join(grids)}{skipped}{shot}
<footer>Spatial entropy: the aura (4-neighbour co-occurrence) reading of METHOD.md §2; significance: {escape(s['significance'])}.
Every number is in report.json.</footer>
</body></html>
"""


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;max-width:1100px;margin:2em auto;padding:0 1.2em}
h1{margin:.2em 0;font-size:1.7em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em;font-size:1.25em}
.meta{color:#555;font-size:.92em}.summary{background:#f3f6fb;border-left:4px solid #4c72b0;padding:.6em .9em}
.note{color:#666;font-size:.9em;margin:.2em 0}svg{width:100%;height:auto;max-width:900px}
table{border-collapse:collapse;font-size:.88em}th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.sig td{background:#fbeaea}code{font-size:.95em}
.scroll{overflow-x:auto}table.maps td{padding:2px}table.maps img{width:96px;height:auto;image-rendering:pixelated;display:block}
table.maps th{font-weight:normal;font-size:.8em;white-space:nowrap}th.img{max-width:12em;white-space:normal!important}
.shot svg{max-width:100%;border:1px solid #ccc}footer{margin:2.5em 0 1em;color:#777;font-size:.85em}
"""


def _layer_cells(layer: dict) -> tuple:
    """One layer's table row, as both reports show it: name, type, shape, five numbers, significant."""
    e = layer["entropy"]
    return (layer["name"], layer["type"], _shape(layer["output_shape"]), f"{layer['parameters']:,}",
            _fmt(e["mean"]), f"{_fmt(e['ci95'][0])} – {_fmt(e['ci95'][1])}", _fmt(layer["delta"], "+.3f"),
            _fmt(layer["p_value"], ".2g"), layer["significant"])


# Characters Markdown gives a meaning to wherever they stand (HTML's are escaped as entities).
_MARKDOWN_ACTIVE = re.compile(r"([\\`*_\[\]()!|~#$])")


def _md(text: str) -> str:
    """A name from outside as literal Markdown text: no HTML, link, emphasis or table cell can come of it."""
    return escape(_MARKDOWN_ACTIVE.sub(r"\\\1", readable(text)))


def _md_code(text: str) -> str:
    """A name in code style: `<code>` rather than backticks, whose content no escape reaches."""
    return f"<code>{_md(text)}</code>"


def _caption(image: dict) -> str:
    predicted = image["predicted_name"] or str(image["predicted"])
    text = f"predicted {predicted} ({image['confidence']:.0%})"
    if image["label"] is not None:
        text += f", label {image['label_name'] or image['label']}"
    return text


def _class(names: list[str] | None, index: int | None) -> str | None:
    if index is None or names is None or not 0 <= index < len(names):
        return None
    return names[index]


def _readable_or_none(name: str | None) -> str | None:
    return None if name is None else readable(name)


def _num(value: float) -> float | None:
    """JSON has no NaN: undefined numbers (one image, first layer) are null."""
    return float(value) if math.isfinite(value) else None


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def _shape(shape: list[int]) -> str:
    return "×".join(map(str, shape)) if shape else "–"


def _offline(svg: str) -> str:
    """The SVG without the web fonts Rich's screenshots link to (the local font, or a monospace one, is used)."""
    return re.sub(r',\s*url\([^)]*\)\s*format\([^)]*\)', "", svg)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename the finished folder to `target`, moving an old one aside until the rename succeeded."""
    staging.chmod(0o755)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
