"""The saliency pane: the selected layer's map over the current image, and what the map explains."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.console import Group, RenderableType
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from semiotui.engine import ImageResult
from semiotui.engine.names import class_name
from semiotui.themes.colormaps import COLORMAPS, DEFAULT_COLORMAP

from .heatmap import Heatmap


@dataclass(eq=False)
class SaliencyContent:
    """What the pane shows: an image, the map over it (or why there is none), and a caption."""

    image: np.ndarray | None
    saliency: np.ndarray | None
    caption: Text
    message: str = ""


def class_text(index: int | None, names: list[str] | None) -> str:
    """A class as the interface shows it: its name, `class N` where it has none, `?` where it is unknown."""
    if index is None:
        return "?"
    return class_name(names, index) or f"class {index}"


def describe_image(row: ImageResult, names: list[str] | None) -> Text:
    """`predicted cat 93% · true dog ✗ · explains cat`: the decision and the class the map explains."""
    text = Text("predicted ")
    text.append(class_text(row.predicted, names), style="bold")
    text.append(f" {row.confidence:.0%}")
    if row.label is not None:
        right = row.label == row.predicted
        text.append(" · true ")
        text.append(class_text(row.label, names), style="bold")
        text.append(" ✓" if right else " ✗", style="green" if right else "red")
    if row.target != row.predicted:
        text.append(" · explains ")
        text.append(class_text(row.target, names), style="bold")
    return text


class SaliencyView(Widget, can_focus=True):
    """Draws a `SaliencyContent` with the heatmap filling the space the caption leaves."""

    content: reactive[SaliencyContent | None] = reactive(None)
    view: reactive[str] = reactive("overlay")
    """The map over the image, the map alone or the image alone (heatmap.VIEWS)."""

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.refresh())

    @property
    def colormap(self) -> str:
        name = self.app.theme_variables.get("heatmap-colormap", DEFAULT_COLORMAP)
        return name if name in COLORMAPS else DEFAULT_COLORMAP

    def render(self) -> RenderableType:
        content = self.content
        if content is None:
            return Text("waiting for the analysis…", style="dim")
        caption = content.caption.copy()
        if content.message:
            caption.append("\n" + content.message, style="italic")
        heatmap = None
        if content.image is not None:
            heatmap = Heatmap(content.image, content.saliency, colormap=self.colormap, color=not self.app.no_color,
                              view=self.view)
            if heatmap.saliency is not None:
                caption.append("\n").append_text(heatmap.legend())
            if self.view != "overlay":
                caption.append(f" · {self.view} alone (v)", style="dim")
        lines = len(caption.wrap(self.app.console, max(1, self.size.width)))
        room = self.size.height - lines
        if heatmap is None or room < 3:
            return caption
        heatmap.height = room
        return Group(heatmap, caption)
