"""A saliency map drawn over its image with half blocks: two pixels per cell, in true colour."""

from __future__ import annotations

import numpy as np
from rich.color import Color, ColorType
from rich.color_triplet import ColorTriplet
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from semiotui.themes.colormaps import DEFAULT_COLORMAP, colorize, normalize, overlay, resize_bilinear

UPPER_HALF = "▀"
PLAIN = Style()  # for padding: Textual's colour filters need a style on every segment
GREY_RAMP = " .:-=+*#%@"  # for terminals without colour: darker to brighter
VIEWS = ("overlay", "map", "image")  # what the saliency pane draws: `v` goes round them


def true_color(r: int, g: int, b: int) -> Color:
    """A 24-bit Rich colour, built directly (the heatmap makes thousands per frame)."""
    return Color(f"#{r:02x}{g:02x}{b:02x}", ColorType.TRUECOLOR, None, ColorTriplet(r, g, b))


class Heatmap:
    """Rich renderable: `saliency` blended in a colour map over `image` (colours muted), fitted to the space given.

    With `color=False` it draws the map alone as a ramp of characters, for `NO_COLOR` terminals.
    """

    def __init__(
        self,
        image: np.ndarray,
        saliency: np.ndarray | None,
        *,
        colormap: str = DEFAULT_COLORMAP,
        opacity: float = 0.6,
        saturation: float = 0.5,
        color: bool = True,
        height: int | None = None,
        view: str = "overlay",
    ) -> None:
        """`view`: the map over the image ("overlay"), the map alone ("map") or the image alone ("image")."""
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
        self.image = image
        self.saliency = saliency if view != "image" else None
        self.view = view
        self.colormap = colormap
        self.opacity = opacity
        self.saturation = saturation
        self.color = color
        self.height = height

    def fit(self, width: int, height: int) -> tuple[int, int]:
        """Cells (columns, rows) that keep the image's aspect ratio within width × height."""
        img_h, img_w = self.image.shape[:2]
        scale = min(width / img_w, 2 * height / img_h)
        return max(1, int(img_w * scale)), max(1, int(img_h * scale / 2))

    def pixels(self, columns: int, rows: int) -> np.ndarray:
        """The blended picture, (2·rows, columns, 3) uint8."""
        if self.view == "map" and self.saliency is not None:
            return colorize(normalize(resize_bilinear(self.saliency, 2 * rows, columns)), self.colormap)
        saturation = 1.0 if self.view == "image" else self.saturation  # the image alone in its own colours
        return overlay(self.image, self.saliency, 2 * rows, columns, colormap=self.colormap, opacity=self.opacity,
                       saturation=saturation)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        height = self.height or options.height or options.max_width // 2
        columns, rows = self.fit(options.max_width, height)
        margin = (options.max_width - columns) // 2
        left, pad = " " * margin, " " * (options.max_width - columns - margin)
        if not self.color:
            yield from self._ramp(columns, rows, left, pad)
            return
        picture = self.pixels(columns, rows).tolist()
        for row in range(rows):
            yield Segment(left, PLAIN)
            for top, bottom in zip(picture[2 * row], picture[2 * row + 1]):
                yield Segment(UPPER_HALF, Style.from_color(true_color(*top), true_color(*bottom)))
            yield Segment(pad + "\n", PLAIN)

    def legend(self, width: int = 12) -> Text:
        """`low ▇▇▇… high · max 0.0123`: what the colours mean, and the map's largest value (maps are scaled to it)."""
        text = Text("low ", style="dim")
        if self.color:
            for r, g, b in colorize(np.linspace(0.0, 1.0, width), self.colormap).tolist():
                text.append("█", style=Style(color=true_color(r, g, b)))
        else:
            text.append(GREY_RAMP.strip())
        text.append(" high", style="dim")
        if self.saliency is not None:
            text.append(f" · max {float(np.max(self.saliency)):.3g}", style="dim")
        return text

    def _ramp(self, columns: int, rows: int, left: str, pad: str) -> RenderResult:
        source = self.saliency if self.saliency is not None else self.image.mean(axis=2)
        level = normalize(resize_bilinear(source, rows, columns))
        index = np.minimum((level * len(GREY_RAMP)).astype(np.intp), len(GREY_RAMP) - 1)
        for row in index:
            yield Segment(left + "".join(GREY_RAMP[i] for i in row) + pad + "\n", PLAIN)
