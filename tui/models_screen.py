"""Two models side by side in the interface: the pruned one against its original, on the explorer's images."""

from __future__ import annotations

from pathlib import PurePath
from typing import ClassVar

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from semiotui.engine import AnalysisResult
from semiotui.engine.comparison import ModelComparison
from semiotui.engine.workspace import Workspace

from .compare import Curves, GroupPlot, Line
from .layer_tree import short_names
from .plain import plain
from .saliency import SaliencyContent, SaliencyView, describe_image


class ModelsScreen(Screen[None]):
    """Both curves with their bands, where they differ (paired by image), and one image's maps under each."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Back", id="back"),
        Binding("n", "image(1)", "Next image", id="next-image"),
        Binding("p", "image(-1)", "Prev", show=False, id="previous-image"),
    ]

    def __init__(self, comparison: ModelComparison, workspace: Workspace, results: tuple[AnalysisResult, AnalysisResult]):
        super().__init__()
        self.comparison = comparison
        self.workspace = workspace
        self.results = results
        # images whose maps both analyses kept, by position in each
        names_b = {row.name: k for k, row in enumerate(results[1].images) if row.maps is not None}
        self.pairs = [(k, names_b[row.name]) for k, row in enumerate(results[0].images)
                      if row.maps is not None and row.name in names_b]
        self.image = 0
        self.shown_layer = 0  # position among the common layers (not `layer`: a Widget property)

    def compose(self) -> ComposeResult:
        with Horizontal(id="models"):
            with Vertical(id="models-left"):
                yield Static(id="models-summary")
                yield DataTable(id="models-layers", cursor_type="row", zebra_stripes=True)
            with Vertical(id="models-right"):
                yield GroupPlot(id="models-curve")
                with Horizontal(id="models-maps"):
                    yield SaliencyView(id="model-a-map")
                    yield SaliencyView(id="model-b-map")
        yield Footer()

    def on_mount(self) -> None:
        c = self.comparison
        a, b = c.names
        self.query_one("#models-summary").border_title = plain(f"A: {a} · B: {b}")
        self.query_one("#models-summary", Static).update(plain(" ".join(c.summary())))
        self.query_one("#models-curve").border_title = "Entropy curves, both models"
        self.query_one("#models-layers").border_title = "Layers: H and ΔH of A and B, p paired by image"
        table = self.query_one(DataTable)
        table.add_columns("layer", "H A", "H B", "p", "ΔH A", "ΔH B", "p")
        for j, name in enumerate(short_names(c.layers)):
            table.add_row(plain(name), *_cells(c, j))
        self.query_one("#model-a-map").border_title = plain(f"A: {a}")
        self.query_one("#model-b-map").border_title = plain(f"B: {b}")
        self.query_one(GroupPlot).data = self._curves()
        self._show_maps()
        table.focus()

    def _curves(self) -> Curves:
        c = self.comparison
        lines = []
        for name, steps, colour in zip(c.names, c.steps, ("cyan", "orange")):
            j = [steps.layers.index(layer) for layer in c.layers]
            lines += [Line(f"{name} (n={steps.count})", steps.mean[j], colour),
                      Line(None, steps.ci_low[j], "gray"), Line(None, steps.ci_high[j], "gray")]
        differ = [int(j) for j in np.flatnonzero(c.differs)]
        title = "they differ at the marked layers (p < 0.01)" if differ else "no layer differs significantly"
        return Curves(c.layers, lines, title, "bits", differ)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.shown_layer = event.cursor_row
        self._show_maps()

    def action_image(self, step: int) -> None:
        if self.pairs:
            self.image = (self.image + step) % len(self.pairs)
            self._show_maps()

    def _show_maps(self) -> None:
        views = (self.query_one("#model-a-map", SaliencyView), self.query_one("#model-b-map", SaliencyView))
        if not self.pairs:
            for view in views:
                view.content = SaliencyContent(None, None, Text(), "no image has maps under both models")
            return
        layer = self.comparison.layers[self.shown_layer]
        for view, result, k in zip(views, self.results, self.pairs[self.image]):
            row = result.images[k]
            caption = Text(PurePath(row.name).name, style="bold")
            caption.append(f" · {self.image + 1}/{len(self.pairs)} with maps · {layer}\n", style="dim")
            caption.append_text(describe_image(row, self.workspace.class_names))
            j = result.layers.index(layer)
            caption.append(f"\nH = {row.entropy[j]:.2f} bits" if np.isfinite(row.entropy[j]) else "\nH: none, empty map")
            view.content = SaliencyContent(self.workspace.images.image(row.index), row.maps.get(layer), caption)


def _cells(c: ModelComparison, j: int) -> list[Text]:
    """One layer's row: the two means and their test, the two drops and theirs; significant ones marked."""
    def number(value: float, spec: str) -> str:
        return format(value, spec) if np.isfinite(value) else "–"

    def p(value: float, differs: bool) -> Text:
        return Text(number(value, ".2g") + (" *" if differs else ""), style="bold" if differs else "")

    return [Text(number(c.mean_a[j], ".2f")), Text(number(c.mean_b[j], ".2f")), p(c.p_value[j], c.differs[j]),
            Text(number(c.step_a[j], "+.2f")), Text(number(c.step_b[j], "+.2f")),
            p(c.step_p_value[j], c.step_differs[j])]
