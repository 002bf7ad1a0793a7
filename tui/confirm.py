"""A yes-or-no question: quit while a job runs, leave the pruning screen, replace a file."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from .plain import plain


class ConfirmQuit(ModalScreen[bool]):
    """Quit anyway (or `yes`)? `y` or the first button: yes; `n`, escape or the second: no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="yes"),
        Binding("n", "answer(False)", "No", id="no"),
        Binding("escape", "answer(False)", "No", show=False, id="back"),
        Binding("q", "nothing", show=False, id="quit"),  # the app's quit is what asked
    ]

    def __init__(self, message: str, *, yes: str = "Quit", no: str = "Stay") -> None:
        super().__init__()
        self.message = message
        self.yes, self.no = yes, no

    def compose(self) -> ComposeResult:
        with Grid(id="confirm"):
            yield Label(plain(self.message), id="question")
            yield Button(self.yes, variant="error", id="quit")
            yield Button(self.no, variant="primary", id="stay")

    def on_mount(self) -> None:
        self.query_one("#stay", Button).focus()

    def action_nothing(self) -> None:
        pass

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "quit")

    def action_answer(self, quit: bool) -> None:
        self.dismiss(quit)
