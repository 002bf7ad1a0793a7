"""The entropy curve across layers: the dataset mean with its 95% band, the current image, the selected layer."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.geometry import Size
from textual.reactive import reactive
from textual.strip import Strip
from textual_plotext import PlotextPlot

from semiotui.engine import AnalysisSettings
from semiotui.engine.names import readable

from .heatmap import PLAIN
from .layer_tree import clip, short_names


@dataclass(eq=False)
class CurveData:
    """Curves over the measured maps, in forward order."""

    names: list[str]
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    image: np.ndarray | None  # the current image's curve
    selected: int | None  # position of the selected layer's map
    units: str = "bits"
    labels: tuple[str, str] = ("dataset mean", "this image")  # of `mean` and `image`
    control: np.ndarray | None = None  # the control networks' mean curve, drawn dimmed
    against: bool = False  # the curves are differences from the control's (the control is the zero line)


class BackgroundPlot(PlotextPlot, can_focus=True):
    """A plotext plot of `data`, built in a worker thread so that keys are answered while it draws.

    plotext is pure Python and takes tens of milliseconds per plot; the widget
    shows the last finished build until the next one is ready. Subclasses draw
    `data` in `draw`.
    """

    data: reactive[object | None] = reactive(None)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._lock = threading.Lock()  # one build at a time uses the figure
        self._lines: list[list[Segment]] = []
        self._legend: list[tuple[str, str | tuple[int, int, int]]] = []  # (label, colour) of this build's curves
        self.plot_size = Size(0, 0)  # the size the build under way draws for (`draw` reads its width)

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._build())

    def watch_data(self) -> None:
        self._build()

    def on_resize(self, event: events.Resize) -> None:
        self._build()

    def _build(self) -> None:
        """Build the plot at the widget's size now, in a worker thread (which must not ask Textual for a layout)."""
        self.plot_size = self.size
        self._build_plot()

    @work(thread=True, exclusive=True, group="plot")
    def _build_plot(self) -> None:
        with self._lock:
            self.plt.clear_data()
            self.plt.clear_figure()
            self._legend = []
            self.draw(self.data)
            width, height = self.plot_size
            # Its own console: the app's holds a lock while rendering, which would stall the UI thread.
            console = Console(width=width, height=height, color_system="truecolor")
            legend = self._legend_lines(console)
            height = max(3, height - len(legend))  # the legend goes under the plot, never over the curves
            self.plt.plotsize(width, height)
            self.plt._set_size(width, height)  # as PlotextPlot.render does (textual-plotext issue 5)
            self.plt.theme(self._get_plotext_theme_name(self.app.theme))
            text = Text.from_ansi(self.plt.build())
            lines = console.render_lines(text, console.options.update(height=height), pad=True) + legend
        # Textual's colour filters (NO_COLOR) need a style on every segment.
        lines = [[Segment(seg.text, seg.style or PLAIN) for seg in line] for line in lines]
        self.app.call_from_thread(self._show, lines)

    def _legend_lines(self, console: Console) -> list[list[Segment]]:
        """The curves' names under the plot, in their colours, on at most two lines."""
        if not self._legend:
            return []
        legend = Text(" ", no_wrap=False)
        for k, (label, colour) in enumerate(self._legend):
            legend.append("  " if k else "")
            legend.append("━━ ", style=Style(color=_rich_colour(colour)))
            legend.append(label)
        return console.render_lines(legend, console.options.update(height=None), pad=True)[:2]

    def title(self, text: str) -> None:
        """The plot's title, cut to the width (plotext leaves out a title that does not fit).

        `readable`, as the ticks: plotext's drawing is read back as ANSI, where a name's escapes would act.
        """
        self.plt.title(clip(readable(text), max(4, self.plot_size.width - 4)))

    def curve(self, values: np.ndarray, *, color: str | tuple[int, int, int], label: str | None = None) -> None:
        """One curve over layers 1..n, broken where a layer has no value (empty maps): not drawn as 0, not bridged.

        A labelled curve is named in the legend under the plot.
        """
        if label is not None:
            self._legend.append((readable(label), color))
        finite = np.isfinite(np.asarray(values, dtype=float))
        start = None
        for i in range(len(finite) + 1):
            if i < len(finite) and finite[i]:
                start = i if start is None else start
            elif start is not None:
                self.plt.plot(list(range(start + 1, i + 1)), [float(v) for v in values[start:i]], marker="braille",
                              color=color)
                start = None

    def _show(self, lines: list[list[Segment]]) -> None:
        self._lines = lines
        self.refresh()

    def render_line(self, y: int) -> Strip:
        if y < len(self._lines):
            return Strip(self._lines[y])
        return Strip.blank(self.size.width, PLAIN)

    def draw(self, data: object | None) -> None:
        """Put `data` on the cleared figure `self.plt`; runs in the worker thread."""
        raise NotImplementedError


class EntropyCurve(BackgroundPlot):
    """The entropy curve: the mean with its 95% band, a second curve (the current image), the selected layer."""

    data: reactive[CurveData | None] = reactive(None)

    def draw(self, data: CurveData | None) -> None:
        plt = self.plt
        plt.ylabel((f"ΔH vs control ({data.units})" if data.against else f"H ({data.units})") if data else "H")
        if data is None or not len(data.names):
            self.title("entropy curve: waiting for the first batch")
            return
        if np.isfinite(data.low).any():
            self.curve(data.high, color="gray", label="95% vs control" if data.against else "95% CI")
            self.curve(data.low, color="gray")
        if data.control is not None:
            self.curve(data.control, color="gray+", label="control (0)" if data.against else "control")
        self.curve(data.mean, color="cyan", label=data.labels[0])
        if data.image is not None:
            self.curve(data.image, color="orange", label=data.labels[1])
        names = layer_ticks(plt, data.names, self.plot_size.width)
        if data.selected is not None:
            plt.vertical_line(data.selected + 1, color="magenta")
            self.title(f"▏ {names[data.selected]} (layer {data.selected + 1} of {len(names)})")


def _rich_colour(colour: str | tuple[int, int, int]) -> str:
    """A plotext colour as Rich names it."""
    if isinstance(colour, tuple):
        return "rgb({},{},{})".format(*colour)
    return {"gray": "grey50", "gray+": "grey70", "orange": "dark_orange"}.get(colour, colour)


def layer_ticks(plt: object, names: list[str], width: int) -> list[str]:
    """Ticks 1..n along x: the layers' short names where they fit in `width` cells, else numbers; returns the names."""
    short = [readable(name) for name in short_names(names)]  # plotext's drawing is read back as ANSI
    x = list(range(1, len(names) + 1))
    if sum(len(n) + 1 for n in short) <= width - 12:
        plt.xticks(x, short)
    else:
        step = -(-len(x) // max(1, (width - 12) // 4))  # a tick every 4 cells at most
        plt.xticks(x[::step])
    return short


def units(settings: AnalysisSettings) -> str:
    """What the entropy of an analysis is measured in."""
    return "normalised" if settings.normalized else "bits"
