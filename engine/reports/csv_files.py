"""The reports' CSV files: entropy.csv (image × layer) and control.csv (network and image × layer)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..analysis import AnalysisResult
from ..names import readable


def write_entropy_csv(path: Path, result: AnalysisResult) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *map(spreadsheet_text, result.layers)])
        for r in result.images:  # an empty map has no entropy: a blank cell
            writer.writerow([spreadsheet_text(r.name), *_bits(r.entropy)])


def write_control_csv(path: Path, result: AnalysisResult) -> None:
    """The control networks' entropies: one row per network and image, blank for an empty map."""
    control = result.control
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "image", *map(spreadsheet_text, control.layers)])
        for seed, rows in zip(control.seeds, control.entropy):
            for position, values in zip(control.rows, rows):
                writer.writerow([seed, spreadsheet_text(result.images[position].name), *_bits(values)])


def spreadsheet_text(name: str) -> str:
    """A name as a CSV text cell that no spreadsheet runs as a formula: `'` before a leading = + - @ tab or CR."""
    return readable(f"'{name}" if name.startswith(("=", "+", "-", "@", "\t", "\r")) else name)


def _bits(values: np.ndarray) -> list[str]:
    """Entropies as CSV cells: repr() round-trips each float; an empty map (NaN) is a blank cell."""
    return [repr(float(v)) if math.isfinite(v) else "" for v in values]
