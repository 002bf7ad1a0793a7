"""A comparison report folder: report.html (self-contained), report.md, report.json of two models side by side.

Written like an analysis report: claimed before the slow part, built under a
temporary name and renamed into place. `semiotui open` browses analysis
reports; a comparison is read in a browser.
"""

from __future__ import annotations

import base64
import json
import platform
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from semiotui import __version__
from semiotui.themes.colormaps import overlay

from ..analysis import AnalysisResult
from ..charts import Series, curve_svg
from ..comparison import ModelComparison
from ..names import html_text
from ..report_folder import ReportClaim, claim_report_folder, report_files
from ..workspace import Workspace
from .content import fmt
from .data import num
from .html_page import STYLESHEET
from .markdown import md
from .png import png_bytes, tile_size

Side = tuple[Workspace, AnalysisResult]  # a model's workspace (images for the maps) and its analysis


def write_comparison(directory: str | Path | ReportClaim, comparison: ModelComparison, a: Side, b: Side, *,
                     force: bool = False) -> Path:
    """Write the comparison of `a` and `b` into `directory` (created; replaced only with `force`, and only a report)."""
    if not isinstance(directory, ReportClaim):
        inputs = [*a[0].inputs, *b[0].inputs]
        with claim_report_folder(directory, force=force, inputs=inputs) as claim:
            return write_comparison(claim, comparison, a, b)
    with directory.staging() as staging:
        data = comparison_data(comparison)
        charts = _charts(comparison)
        tiles = _tiles(comparison, a, b)
        images = staging / "images"
        images.mkdir()
        for name, svg in charts.items():
            (images / name).write_text(svg, encoding="utf-8")
        for k, (image, rows) in enumerate(tiles):
            for side, row in zip("ab", rows):
                for j, png in enumerate(row):
                    (images / f"image{k}_{side}{j}.png").write_bytes(png)
        (staging / "report.md").write_text(_markdown(data, charts, tiles), encoding="utf-8")
        (staging / "report.html").write_text(_html(data, charts, tiles), encoding="utf-8")
        data["files"] = report_files(staging)  # last, listing the others
        (staging / "report.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return directory.target


def comparison_data(c: ModelComparison) -> dict:
    """Every number of the comparison."""
    return {
        "semiotui": __version__,
        "kind": "comparison",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "models": [{"name": name, "parameters": params, "accuracy": None if score is None else asdict(score),
                    "superization": [s.layers[i] for i in np.flatnonzero(s.significant)],
                    "finding": None if s.finding is None else {
                        "start": s.layers[s.finding.start], "end": s.layers[s.finding.end],
                        "excess": num(s.finding.excess), "excess_ci95": [num(v) for v in s.finding.interval]},
                    "controlled": s.control is not None}
                   for name, params, score, s in zip(c.names, c.parameters, c.accuracy, c.steps)],
        "images": c.images,
        "paired_by": c.paired_by,
        "measured_differently": c.differences,
        "significance": "two-sided Wilcoxon signed-rank paired by image, Holm over the layers, p < 0.01; "
                        "empty maps left out pair by pair",
        "summary": c.summary(),
        "layers": [{"name": name, "mean": [num(c.mean_a[j]), num(c.mean_b[j])], "pairs": int(c.pairs[j]),
                    "p_value": num(c.p_value[j]), "differs": bool(c.differs[j]),
                    "step": [num(c.step_a[j]), num(c.step_b[j])], "step_pairs": int(c.step_pairs[j]),
                    "step_p_value": num(c.step_p_value[j]), "step_differs": bool(c.step_differs[j])}
                   for j, name in enumerate(c.layers)],
    }


def _charts(c: ModelComparison) -> dict[str, str]:
    """Both curves with their bands over the common layers; both models' ΔH per step."""
    series = []
    for name, s in zip(c.names, c.steps):
        j = [s.layers.index(layer) for layer in c.layers]
        series.append(Series(f"{name} (n = {s.count})", s.mean[j], s.ci_low[j], s.ci_high[j]))
    steps = [Series(f"ΔH {name}", values) for name, values in zip(c.names, (c.step_a, c.step_b))]
    return {"curves.svg": curve_svg(c.layers, series, mark=None, title="Spatial entropy per layer, both models"),
            "steps.svg": curve_svg(c.layers, steps, title="Entropy drop into each layer (ΔH), both models",
                                   ylabel="ΔH (bits)")}


def _tiles(c: ModelComparison, a: Side, b: Side, count: int = 4) -> list[tuple[str, list[list[bytes]]]]:
    """The same images' maps side by side: for each image with maps in both, a row of tiles per model."""
    out = []
    for row_a, row_b in ((a[1].images[i], b[1].images[j]) for i, j in c.rows):
        if row_a.maps is None or row_b.maps is None:
            continue
        rows = []
        for workspace, row in ((a[0], row_a), (b[0], row_b)):
            picture = workspace.images.image(row.index)
            size = tile_size(picture.shape[:2])
            rows.append([png_bytes(overlay(picture, None, *size))]
                        + [png_bytes(overlay(picture, row.maps[layer], *size)) for layer in c.layers if layer in row.maps])
        out.append((row_a.name, rows))
        if len(out) == count:
            break
    return out


def _layer_names(data: dict) -> list[str]:
    return [layer["name"] for layer in data["layers"]]


COLUMNS = ("layer", "H A", "H B", "n", "p", "differs", "ΔH A", "ΔH B", "n", "p", "differs")


def _cells(layer: dict) -> list[str]:
    return [fmt(layer["mean"][0]), fmt(layer["mean"][1]), str(layer["pairs"]), fmt(layer["p_value"], ".2g"),
            "yes" if layer["differs"] else "", fmt(layer["step"][0], "+.3f"), fmt(layer["step"][1], "+.3f"),
            str(layer["step_pairs"]), fmt(layer["step_p_value"], ".2g"), "yes" if layer["step_differs"] else ""]


def _markdown(data: dict, charts: dict[str, str], tiles: list) -> str:
    a, b = (m["name"] for m in data["models"])
    lines = ["# semiotui comparison", "", f"A: {md(a)}; B: {md(b)}; {data['images']} images in common.", "",
             *map(md, data["summary"]), ""]
    for name in charts:
        lines += [f"![{name}](images/{name})", ""]
    lines += [f"Tests: {md(data['significance'])}.", "", "| " + " | ".join(COLUMNS) + " |",
              "|---|" + "---:|" * (len(COLUMNS) - 1)]
    lines += [f"| {md(layer['name'])} | " + " | ".join(_cells(layer)) + " |" for layer in data["layers"]]
    for k, (image, rows) in enumerate(tiles):
        lines += ["", f"### {md(image)}", ""]
        for side, row in zip("ab", rows):
            lines.append(f"{side.upper()}: " + " ".join(f"![](images/image{k}_{side}{j}.png)" for j in range(len(row))))
            lines.append("")
    return "\n".join(lines) + "\n"


def _html(data: dict, charts: dict[str, str], tiles: list) -> str:
    a, b = (m["name"] for m in data["models"])
    head = "".join(f"<th>{html_text(c)}</th>" for c in COLUMNS)
    rows = "".join(f"<tr class=\"{'sig' if layer['differs'] else ''}\"><td><code>{html_text(layer['name'])}</code></td>"
                   + "".join(f"<td class=n>{html_text(c)}</td>" for c in _cells(layer)) + "</tr>"
                   for layer in data["layers"])
    grids = []
    header = "<tr><th></th><th>input</th>" + "".join(f"<th>{html_text(n)}</th>" for n in _layer_names(data)) + "</tr>"
    for image, tile_rows in tiles:
        cells = header + "".join(
            f"<tr><th>{side}</th>" + "".join(
                f"<td><img src=\"data:image/png;base64,{base64.b64encode(png).decode()}\" alt=\"\"></td>" for png in row)
            + "</tr>" for side, row in zip("AB", tile_rows))
        grids.append(f"<h3>{html_text(image)}</h3><div class=scroll><table class=maps>{cells}</table></div>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>semiotui comparison</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>
{STYLESHEET}</style></head><body>
<header><h1>semiotui comparison</h1><p class=meta>A <code>{html_text(a)}</code> · B <code>{html_text(b)}</code> ·
{data['images']} images in common · {html_text(data['created'])} · semiotui {html_text(data['semiotui'])}</p>
<p class=summary>{html_text(' '.join(data['summary']))}</p></header>
{''.join(charts.values())}
<h2>Layers</h2><p class=note>Tests: {html_text(data['significance'])}.</p>
<div class=scroll><table class=layers><tr>{head}</tr>{rows}</table></div>
<h2>The same images' maps</h2><p class=note>Each image's maps under A and under B, at the layers both measure.</p>
{''.join(grids)}
<footer>Every number is in report.json.</footer></body></html>
"""
