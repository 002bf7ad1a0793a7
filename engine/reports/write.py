"""Writing a report folder: each format's files, built under a temporary name and renamed into place.

A crash never leaves half a report; an existing report is replaced only when asked (`force`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from ..analysis import AnalysisResult
from ..errors import InvalidValue
from ..greedy import PruneLog
from ..report_folder import ReportClaim, claim_report_folder, report_files
from ..workspace import Workspace
from . import FORMATS
from .content import prepare_report
from .csv_files import write_control_csv, write_entropy_csv
from .html_page import report_html
from .markdown import report_markdown


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
        report = prepare_report(workspace, result, pruning)
        if "json" in formats:
            _write_maps(staging / "maps.npz", workspace, result)
        if "csv" in formats:
            write_entropy_csv(staging / "entropy.csv", result)
            if result.control is not None:
                write_control_csv(staging / "control.csv", result)
        if "md" in formats:
            images = staging / "images"
            images.mkdir()
            for chart in report.charts:
                _write_text(images / chart.file, chart.svg)
            for tile in report.tiles:
                (images / tile.file).write_bytes(tile.png)
            _write_text(staging / "report.md", report_markdown(report))
        if "html" in formats:
            _write_text(staging / "report.html", report_html(report, screenshot_svg))
        if screenshot_svg is not None:
            _write_text(staging / "screenshot.svg", screenshot_svg)
        if "json" in formats:  # last, listing the others
            report.data["files"] = report_files(staging)
            _write_text(staging / "report.json", json.dumps(report.data, indent=2, allow_nan=False) + "\n")
    return directory.target


def _write_maps(path: Path, workspace: Workspace, result: AnalysisResult) -> None:
    """maps.npz, beside report.json: the kept thumbnails and their images, so `semiotui open` can draw them
    without the model.

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


def _offline(svg: str) -> str:
    """The SVG without the web fonts Rich's screenshots link to (the local font, or a monospace one, is used)."""
    return re.sub(r',\s*url\([^)]*\)\s*format\([^)]*\)', "", svg)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
