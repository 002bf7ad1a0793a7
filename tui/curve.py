"""The entropy curve across layers: the dataset mean with its 95% band, the current image, the selected layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from textual.reactive import reactive
from textual_plotext import PlotextPlot

from .layer_tree import short_names


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


class EntropyCurve(PlotextPlot, can_focus=True):
    """A plotext plot of `CurveData`, replotted whenever `data` is set."""

    data: reactive[CurveData | None] = reactive(None)

    def watch_data(self, data: CurveData | None) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.ylabel(f"H ({data.units})" if data else "H")
        if data is None or not len(data.names):
            plt.title("entropy curve: waiting for the first batch")
            self.refresh()
            return
        x = list(range(1, len(data.names) + 1))
        if np.isfinite(data.low).all():
            plt.plot(x, data.high.tolist(), color="gray", marker="braille", label="95% CI")
            plt.plot(x, data.low.tolist(), color="gray", marker="braille")
        plt.plot(x, data.mean.tolist(), color="cyan", marker="braille", label="dataset mean")
        if data.image is not None:
            plt.plot(x, data.image.tolist(), color="orange", marker="braille", label="this image")
        names = short_names(data.names)
        if data.selected is not None:
            plt.vertical_line(data.selected + 1, color="magenta")
            plt.title(f"▏ {names[data.selected]} (layer {data.selected + 1} of {len(names)})")
        if sum(len(n) + 1 for n in names) <= self.size.width - 12:
            plt.xticks(x, names)
        else:
            step = max(1, len(x) // 12)
            plt.xticks(x[::step])
        self.refresh()
