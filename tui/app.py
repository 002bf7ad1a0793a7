"""The application: themes, configuration, the session that owns the model, and the screens over it.

It paints its first frame before PyTorch is imported: the engine's side of the interface (the session, the run
controller, the explorer) is imported once the workspace is open.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel

from semiotui import themes
from semiotui.engine.names import readable
from semiotui.themes.theme import DEFAULT_THEME, THEMES

from . import preload
from .config import load_config, save_config
from .confirm import ConfirmQuit
from .help import HelpScreen
from .keymap import read_keymap
from .loading import LoadingScreen
from .plain import say

if TYPE_CHECKING:
    from textual.screen import Screen

    from semiotui.engine.session import Session
    from semiotui.engine.workspace import Workspace

    from .controller import RunController
    from .explorer import ExplorerScreen

KEEP_MAPS = 64  # images whose maps the analysis keeps; others' are computed when shown


class SemiotuiApp(App[int]):
    """The explorer of one workspace, and what it opens (compare, pruning, export), over one session.

    The run controller owns the session's jobs and their results; the screens are given it, or what they need.
    """

    CSS_PATH = Path(themes.__file__).parent / "semiotui.tcss"
    TITLE = "semiotui"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark,f1", "help", "Help", key_display="?", id="help"),
    ]

    def __init__(self, workspace: Workspace | Callable[[], Workspace], *, show_timings: bool = True,
                 keep_maps: int = KEEP_MAPS, tracebacks: bool = False) -> None:
        """`workspace`, or a function that opens it: then the first frame says "loading the model…" while a
        thread opens it, and a failure to open it ends the app (`failure`). `show_timings=False` hides rates,
        times and memory, for reproducible screenshots; `tracebacks` (`--debug`) shows a bug's traceback with
        its message."""
        super().__init__()
        for theme in THEMES.values():
            self.register_theme(theme)
        self.show_timings, self.keep_maps, self.tracebacks = show_timings, keep_maps, tracebacks
        self.config = load_config()
        self.keymap, self._keymap_problems = read_keymap(self.config)  # the user's keys, by binding id
        self.set_keymap(self.keymap)
        self._clashes_said: set[frozenset[str]] = set()
        self.session: Session | None = None  # the one owner of the model: every job on it goes through it
        self.controller: RunController | None = None
        self.explorer: ExplorerScreen | None = None
        self.failure: Exception | None = None  # why the workspace could not be opened
        self._open = workspace if callable(workspace) else None
        if self._open is None:
            self._take(self._control(workspace))

    def _control(self, workspace: Workspace) -> RunController:
        """The session on `workspace` and its run controller (imports PyTorch; any thread)."""
        from semiotui.engine.session import open_session

        from .controller import RunController

        controller = RunController(open_session(workspace), self.call_later, keep_maps=self.keep_maps,
                                   tracebacks=self.tracebacks)
        # The statistics' library, before the first steps need it; not sooner: beside PyTorch's import the two
        # contend for the interpreter and the first image came a second later.
        preload.start()
        return controller

    def _take(self, controller: RunController) -> None:
        from .explorer import ExplorerScreen

        self.controller, self.session = controller, controller.session
        self.explorer = ExplorerScreen(controller, show_timings=self.show_timings)

    def get_default_screen(self) -> Screen:
        return self.explorer or LoadingScreen()

    def on_mount(self) -> None:
        saved = self.config.get("theme")
        self.theme = saved if saved in self.available_themes else DEFAULT_THEME
        for problem in self._keymap_problems:
            self.notify(problem, severity="warning", timeout=10)
        if self._open is not None:
            threading.Thread(target=self._opening, name="semiotui-open", daemon=True).start()

    def _opening(self) -> None:
        """Open the workspace (in its thread: the interface answers keys meanwhile) and hand it over."""
        try:
            controller = self._control(self._open())
        except Exception as exc:  # said by `run_app`'s caller as any other failure to open
            self.call_later(self._failed, exc)
        else:
            self.call_later(self._opened, controller)

    def _opened(self, controller: RunController) -> None:
        """The explorer covers the loading screen (and replaces the help, if it was open over it)."""
        self._take(controller)
        while not isinstance(self.screen, LoadingScreen):
            self.pop_screen()
        self.push_screen(self.explorer)

    def _failed(self, error: Exception) -> None:
        self.failure = error
        self.exit(return_code=1)

    def watch_theme(self, theme: str) -> None:
        if load_config().get("theme") != theme:
            save_config(theme=theme)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notify in plain text, never markup: messages quote file, folder and layer names.

        `markup` is ignored: widgets' own `notify` passes True by default.
        """
        super().notify(readable(message), title=readable(title), severity=severity, timeout=timeout, markup=False)

    def handle_bindings_clash(self, clashed_bindings: set[Binding], node: object) -> None:
        """Say once that a key of the keymap took one of Textual's own bindings (ours are checked on reading)."""
        lost = frozenset(binding.key for binding in clashed_bindings)
        if lost not in self._clashes_said:
            self._clashes_said.add(lost)
            self.notify(f"config.json keymap: {', '.join(sorted(lost))} no longer does what it did here",
                        severity="warning", timeout=10)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.keymap))  # its own keys close it

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


def run_app(open_workspace: Callable[[], Workspace], *, debug: bool = False) -> int:
    """Open the explorer on the workspace `open_workspace()` opens (`debug`: with the traceback of a bug); returns
    the exit status, or raises what opening the workspace raised.

    On a terminal the first frame is painted while the workspace opens. Without one (Textual draws on stderr)
    the workspace opens first, so bad input fails as one line on a clean stderr.
    """
    app = SemiotuiApp(open_workspace if sys.stderr.isatty() else open_workspace(), tracebacks=debug)
    app.run()
    if app.failure is not None:
        raise app.failure
    if app.controller is not None:  # else the user quit before the workspace was open
        note = app.controller.stopping_note()  # before the jobs are dropped
        if not app.session.close(timeout=0.5):
            say(note)
            app.session.close()
    return app.return_code or 0
