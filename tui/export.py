"""The export dialog: a report folder of the analysis shown, with a screenshot of the screen, written in a worker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, Static

from semiotui.engine import AnalysisResult, PruneLog
from semiotui.engine.reports import FORMATS
from semiotui.engine.reports.write import write_report
from semiotui.engine.report_folder import NeedsForce, check_report_folder
from semiotui.engine.workspace import Workspace

from .errors import for_interface
from .messages import ExportFailed, ExportProgress, ExportWritten
from .plain import plain

OnProgress = Callable[[str, int | None, int | None], None]  # what is being done, done, total


@dataclass
class ReportInput:
    """What a report is written from: the workspace, its result, and the pruning log of a pruned model."""

    workspace: Workspace
    result: AnalysisResult
    pruning: PruneLog | None = None


ReportSource = Callable[[OnProgress, threading.Event], ReportInput]
"""Run in the worker: gives what to report, reporting progress; may stop early."""


def default_folder(now: datetime | None = None) -> str:
    """A new report folder in the working directory, named for the time."""
    return f"./semiotui-report-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


class ExportDialog(ModalScreen[Path | None]):
    """Folder, formats, replace or not; Export writes the report in a worker and closes with the path written."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="back")]

    def __init__(self, source: ReportSource, *, screenshot: str | None = None, note: str = "",
                 folder: str | None = None, title: str = "Export report", inputs: Sequence[str] = (),
                 tracebacks: bool = False) -> None:
        """`screenshot`: the SVG of the screen behind, taken before the dialog opened; `note`: shown above the form;
        `inputs`: the files and folders the workspace reads, which no report replaces; `tracebacks` (`--debug`):
        a bug's message comes with its traceback."""
        super().__init__()
        self.source = source
        self.inputs = list(inputs)
        self.screenshot = screenshot
        self.note = note
        self.folder = folder or default_folder()
        self.title = title
        self.tracebacks = tracebacks
        self._cancel = threading.Event()
        self._busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="export") as dialog:
            dialog.border_title = self.title
            dialog.border_subtitle = "esc cancels"
            yield Static(plain(self.note), id="export-note")
            yield Label("Folder")
            yield Input(self.folder, id="export-folder", compact=True)
            with Horizontal(id="export-formats"):
                yield Label("Formats")
                for name in FORMATS:
                    yield Checkbox(name, True, id=f"format-{name}", compact=True)
            yield Checkbox("Replace the folder if it exists", False, id="export-replace", compact=True)
            yield ProgressBar(show_eta=False, id="export-progress")
            yield Static("", id="export-status")
            with Horizontal(id="export-buttons"):
                yield Button("Export", variant="primary", id="export-go", compact=True)
                yield Button("Cancel", id="export-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#export-note").display = bool(self.note)
        self.query_one("#export-progress").display = False
        self.query_one("#export-folder", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-go":
            self.start()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        """Close; while the worker runs, ask it to stop before it writes anything."""
        if not self._busy:
            self.dismiss(None)
            return
        self._cancel.set()
        self._say("stopping…")

    def start(self) -> None:
        """Check the form, then write the report in a worker."""
        if self._busy:
            return
        formats = tuple(name for name in FORMATS if self.query_one(f"#format-{name}", Checkbox).value)
        folder = self.query_one("#export-folder", Input).value.strip()
        replace_it = self.query_one("#export-replace", Checkbox).value
        if not folder:
            self._say("choose a folder to write the report into", error=True)
            return
        if not formats:
            self._say("choose at least one format", error=True)
            return
        path = Path(folder).expanduser()
        try:
            check_report_folder(path, force=replace_it, inputs=self.inputs)
        except NeedsForce:
            self._say(f"{path} already exists and is not empty: tick “Replace” to replace a report folder, "
                      "or choose another folder", error=True)
            return
        except OSError as exc:
            self._say(for_interface(exc), error=True)
            return
        self._set_busy(True)
        self._say("starting…")
        self._write(path, formats, replace_it)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def _write(self, path: Path, formats: tuple[str, ...], force: bool) -> None:
        def progress(text: str, done: int | None, total: int | None) -> None:
            self.post_message(ExportProgress(text, done, total))

        try:
            what = self.source(progress, self._cancel)
            if self._cancel.is_set():
                self.post_message(ExportFailed(None))
                return
            progress("writing the files", None, None)
            written = write_report(path, what.workspace, what.result, formats=formats, force=force,
                                   screenshot_svg=self.screenshot, pruning=what.pruning)
        except Exception as exc:  # shown in the dialog, which stays open
            self.post_message(ExportFailed(exc))
        else:
            self.post_message(ExportWritten(written))

    def on_export_progress(self, message: ExportProgress) -> None:
        bar = self.query_one("#export-progress", ProgressBar)
        bar.update(total=message.total, progress=message.done or 0)
        count = f" ({message.done}/{message.total})" if message.total else ""
        self._say(f"{message.text}{count}…")

    def on_export_written(self, message: ExportWritten) -> None:
        self.dismiss(message.path)

    def on_export_failed(self, message: ExportFailed) -> None:
        if message.error is None:
            self.dismiss(None)
            return
        self._set_busy(False)
        self._say(f"not written: {for_interface(message.error, self.tracebacks)}", error=True)

    def _set_busy(self, busy: bool) -> None:
        """While writing: the fields locked and the progress bar shown."""
        self._busy = busy
        self.set_class(busy, "-busy")
        for widget in self.query("Input, Checkbox, #export-go"):
            widget.disabled = busy
        self.query_one("#export-progress").display = busy

    def _say(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#export-status", Static)
        status.update(plain(text))
        status.set_class(error, "-error")
