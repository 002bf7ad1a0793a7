"""The superization steps: ΔH between successive layers as bars, significant steps highlighted."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from rich.console import RenderableType
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from semiotui.engine.superization import Superization

from .layer_tree import abbreviate, short_names

BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int) -> str:
    """A left-aligned bar `fraction` (0..1) of `width` cells long, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(width)


class StepsView(Widget):
    """One row per step along the main path: a bar for ΔH (right of the axis: a drop), its value, and its verdict.

    `*` superization (a significant drop beyond the control networks, into a layer below their level), `~` a
    significant drop that is not (or with no control to tell), `∅` a layer of mostly empty maps (no verdict).
    With a control, ΔH is on the control's images, as tested; the last line names the span where aggregation
    happens, if one does.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "steps--significant", "steps--drop", "steps--rise", "steps--label", "steps--selected"
    }

    selected: reactive[str | None] = reactive(None)
    """The map of the selected layer: the step into it is highlighted."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: Superization | None = None

    def update(self, steps: Superization | None) -> None:
        """Show these steps (a plain attribute: Superization holds arrays, which a reactive cannot compare)."""
        self.steps = steps
        self.refresh(layout=True)

    def _rows(self) -> list[int]:
        return [i for i, p in enumerate(self.steps.parents) if p is not None] if self.steps else []

    def get_content_height(self, container, viewport, width: int) -> int:
        if not self.steps:
            return 1
        verdict = 0 if self.steps.control is None else 1 if self.steps.finding is None else 3
        return len(self._rows()) + 2 + verdict

    def render(self) -> RenderableType:
        steps = self.steps
        rows = self._rows()
        if steps is None or not rows:
            return Text("superization steps: waiting for results", style="dim")
        width = self.size.width
        names = short_names(steps.layers)
        # at least as wide as the header's "entering", so the header is never longer than a row (and never wraps)
        label_width = max(len("entering"), min(max(len(names[i]) for i in rows), width * 45 // 100))
        half = max(2, (width - label_width - 10) // 2)
        ctl = steps.control
        values, drop, empty = steps.step_delta, steps.step_drop, steps.no_verdict
        delta = np.nan_to_num(values[rows])
        scale = float(np.abs(delta).max()) or 1.0
        label_style = self.get_component_rich_style("steps--label")
        drop_style = self.get_component_rich_style("steps--drop")
        rise_style = self.get_component_rich_style("steps--rise")
        sig_style = self.get_component_rich_style("steps--significant")
        selected_style = self.get_component_rich_style("steps--selected")
        text = Text(no_wrap=True, overflow="ellipsis")
        marks: set[str] = set()
        text.append(f"{'entering':<{label_width}} {'rise':>{half}}│{'drop':<{half}}  ΔH\n", style="dim")
        for i in rows:
            value, significant = values[i], bool(steps.significant[i])
            chosen = steps.layers[i] == self.selected
            text.append(f"{abbreviate(names[i], label_width):<{label_width}} ",
                        style=selected_style if chosen else label_style)
            length = abs(value) / scale if np.isfinite(value) else 0.0
            if not np.isfinite(value) or value >= 0:
                text.append(" " * half + "│")
                text.append(bar(length, half), style=sig_style if significant else drop_style)
            else:
                text.append(("█" * round(length * half)).rjust(half), style=rise_style)
                text.append("│" + " " * half)
            text.append(f" {value:+.2f}" if np.isfinite(value) else "   –", style=sig_style if significant else "")
            mark = "*" if significant else "∅" if empty[i] else "~" if drop[i] else ""
            marks.add(mark)
            text.append(f" {mark}" if mark else "", style=sig_style if significant else "")
            text.append("\n")
        legend = {"*": "* superization", "~": "~ drop, not beyond control", "∅": "∅ mostly empty"}
        text.append("  ".join(legend[m] for m in legend if m in marks), style="dim")
        if ctl is not None:
            best = steps.finding
            text.append("\n")
            if best is None:
                text.append(f"no superization vs {ctl.draws} controls", style="dim")
            else:  # short lines: the pane is narrow
                low, high = best.interval
                text.append(f"superization {names[best.start]} → {names[best.end]}\n", style=sig_style)
                text.append(f"  {best.excess:+.2f} bits beyond, n={best.images}\n", style=sig_style)
                text.append(f"  95%: {low:+.2f} to {high:+.2f}", style="dim")
        text.rstrip()
        return text
