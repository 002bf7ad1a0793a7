"""The status line: progress of the analysis, what it measures, the device and its memory."""

from __future__ import annotations

import os
import resource
import sys
from typing import ClassVar

import torch
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


def memory_in_use(device: torch.device) -> str:
    """Memory the analysis holds: the GPU's allocated/total, or this process's resident size."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        used = torch.cuda.memory_allocated(index) / 2**30
        total = torch.cuda.get_device_properties(index).total_memory / 2**30
        return f"GPU {used:.1f}/{total:.0f} GiB"
    try:
        with open("/proc/self/statm") as statm:
            resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best the OS tells
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        resident = peak if sys.platform == "darwin" else peak * 1024
    return f"RAM {resident / 2**20:.0f} MiB"


class StatusLine(Widget):
    """One line; `show_timings=False` leaves out rates, times and memory (for reproducible screenshots)."""

    phase: reactive[str] = reactive("starting")  # starting, running, done, cancelled, failed
    done: reactive[int] = reactive(0)
    total: reactive[int | None] = reactive(None)
    rate: reactive[float] = reactive(0.0)
    seconds: reactive[float] = reactive(0.0)
    settings: reactive[str] = reactive("")
    device: reactive[str] = reactive("")
    memory: reactive[str] = reactive("")
    show_timings: reactive[bool] = reactive(True)
    accuracy: reactive[str] = reactive("")  # over the labelled images so far
    control: reactive[str] = reactive("")  # the control analysis: running n/N, done, none

    SYMBOLS: ClassVar[dict[str, str]] = {"starting": "…", "running": "▶", "done": "✓", "cancelled": "■", "failed": "✗"}

    def render(self) -> Text:
        total = f"/{self.total}" if self.total is not None else ""
        text = Text(f" {self.SYMBOLS.get(self.phase, ' ')} {self.phase} ", style="bold")
        text.append(f"{self.done}{total} images")
        if self.show_timings and self.phase == "running" and self.rate:
            text.append(f" · {self.rate:.1f} img/s")
        if self.show_timings and self.phase == "done":
            text.append(f" in {self.seconds:.1f} s")
        if self.accuracy:
            text.append(f" · {self.accuracy}")
        if self.control:
            text.append(f" · {self.control}", style="dim" if self.control == "no control" else "")
        # memory before the settings and the device: at 80 columns the end of the line is cut, and a cut number
        # misleads where cut words do not
        if self.show_timings and self.memory:
            text.append(f" · {self.memory}")
        text.append(f" │ {self.settings}", style="dim" if not self.settings else "")
        text.append(f" │ {self.device}")
        text.truncate(self.size.width, overflow="ellipsis")
        return text


NARROW = 110  # below this many columns the footer is compact and leaves ctrl+p to the help


def fit_footer(footer, width: int) -> None:
    """Every key of a footer in view at 80 columns: compact spacing, and no ctrl+p entry, when narrow."""
    footer.compact = width < NARROW
    footer.show_command_palette = width >= NARROW
