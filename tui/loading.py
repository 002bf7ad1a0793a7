"""The first frame: the explorer's layout saying "loading the model…", shown before PyTorch is imported."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

LOADING = "loading the model…"
TITLES = {"#layers": "Layers", "#steps": "Superization steps ΔH", "#curve": "Entropy curve"}  # the explorer's too


class LoadingScreen(Screen):
    """The explorer's panes, empty, while the workspace opens in a thread; the explorer replaces it."""

    def compose(self) -> ComposeResult:
        layers, steps, curve = Static(LOADING, id="layers"), Static(id="steps"), Static(id="curve")
        for pane in (layers, steps, curve):
            pane.border_title = TITLES[f"#{pane.id}"]
        with Horizontal(id="main"):
            yield layers
            with Vertical(id="panes"):
                with Horizontal(id="top"):
                    yield Static(id="saliency")
                    yield steps
                yield curve
        yield Static(LOADING, id="status")
        yield Footer()
