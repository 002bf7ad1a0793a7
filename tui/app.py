"""The application: themes, configuration, the session that owns the model, and the screens over it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel

from semiotui import themes
from semiotui.engine.names import readable
from semiotui.engine.session import open_session
from semiotui.engine.workspace import Workspace
from semiotui.themes.theme import DEFAULT_THEME, THEMES

from . import preload
from .config import load_config, save_config
from .confirm import ConfirmQuit
from .controller import KEEP_MAPS, RunController
from .explorer import ExplorerScreen
from .help import HelpScreen
from .plain import say


class SemiotuiApp(App[int]):
    """The explorer of one workspace, and what it opens (compare, pruning, export), over one session.

    The run controller owns the session's jobs and their results; the screens are given it, or what they need.
    """

    CSS_PATH = Path(themes.__file__).parent / "semiotui.tcss"
    TITLE = "semiotui"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark,f1", "help", "Help", key_display="?"),
    ]

    def __init__(self, workspace: Workspace, *, show_timings: bool = True, keep_maps: int = KEEP_MAPS,
                 tracebacks: bool = False) -> None:
        """`show_timings=False` hides rates, times and memory, for reproducible screenshots; `tracebacks`
        (`--debug`) shows a bug's traceback with its message."""
        super().__init__()
        preload.start()  # the statistics' library, before the first steps need it
        for theme in THEMES.values():
            self.register_theme(theme)
        self.session = open_session(workspace)  # the one owner of the model: every job on it goes through it
        self.controller = RunController(self.session, self.call_later, keep_maps=keep_maps, tracebacks=tracebacks)
        self.explorer = ExplorerScreen(self.controller, show_timings=show_timings)

    def get_default_screen(self) -> ExplorerScreen:
        return self.explorer

    def on_mount(self) -> None:
        saved = load_config().get("theme")
        self.theme = saved if saved in self.available_themes else DEFAULT_THEME

    def watch_theme(self, theme: str) -> None:
        if load_config().get("theme") != theme:
            save_config(theme=theme)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notify in plain text, never markup: messages quote file, folder and layer names.

        `markup` is ignored: widgets' own `notify` passes True by default.
        """
        super().notify(readable(message), title=readable(title), severity=severity, timeout=timeout, markup=False)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())  # its own keys close it

    def action_quit(self) -> None:
        """Quit, asking first when a screen would lose work (a running analysis, control or pruning, an unsaved
        model)."""
        for screen in reversed(self.screen_stack):
            question = getattr(screen, "quit_question", lambda: None)()
            if question:
                self.push_screen(ConfirmQuit(question), self._quit_if)
                return
        self.exit(0)

    def _quit_if(self, quit: bool | None) -> None:
        if quit:
            self.exit(0)


def run_app(workspace: Workspace, *, debug: bool = False) -> int:
    """Open the explorer on `workspace` (`debug`: with the traceback of a bug); returns the exit status."""
    app = SemiotuiApp(workspace, tracebacks=debug)
    app.run()
    note = app.controller.stopping_note()  # before the jobs are dropped
    if not app.session.close(timeout=0.5):
        say(note)
        app.session.close()
    return app.return_code or 0
