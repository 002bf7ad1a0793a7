"""The pruning screen: settings, start and stop, and live plots and steps of greedy pruning (semiotui/docs/METHOD.md §5)."""

from __future__ import annotations

import gc
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.lazy import Lazy
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static
from torch import nn

from semiotui.engine import CRITERIA, AnalysisResult, Measure, PruneLog, PruneSettings, Step
from semiotui.engine.comparison import compare
from semiotui.engine.pruning import check_output, conv_layers, save_pruned
from semiotui.engine.session import Job

from .confirm import ConfirmQuit
from .controller import RunController
from .curve import BackgroundPlot, CurveData, EntropyCurve, units
from .errors import for_interface
from .export import ExportDialog
from .messages import (ModelAnalysed, PruneEnded, PruneFailed, PrunePhase, PruneSaved, PruneSaveFailed, PruneStep,
                       PruneWaiting)
from .models_screen import ModelsScreen
from .palette import PruneCommands
from .plain import plain

W = TypeVar("W", bound=Widget)

COMPACT_WIDTH, COMPACT_HEIGHT = 100, 32
DECIMAL, WHOLE = "0123456789.", "0123456789"  # what the number fields take


def percent(part: float, whole: float) -> float:
    """`part` as a percentage of `whole` (0 when there is no whole)."""
    return 100.0 * part / whole if whole else 0.0


@dataclass(eq=False)
class AccuracyData:
    """What the accuracy plot shows: the original model, the steps so far, the tolerance and the target."""

    original: Measure
    steps: list[Step]
    tolerance: float
    target: float | None  # fraction of the original parameters


class AccuracyPlot(BackgroundPlot):
    """Held-out accuracy against parameters (% of the original): the accepted path, rolled-back moves as ×."""

    data: reactive[AccuracyData | None] = reactive(None)

    def draw(self, data: AccuracyData | None) -> None:
        plt = self.plt
        plt.xlabel("parameters, % of the original")
        plt.ylabel("accuracy %")
        if data is None:
            plt.title("accuracy: waiting for the first step")
            return
        whole = data.original.parameters
        path = [(100.0, 100 * data.original.accuracy)]
        path += [(percent(s.parameters, whole), 100 * s.accuracy) for s in data.steps if s.accepted]
        back = [(percent(s.parameters, whole), 100 * s.accuracy) for s in data.steps if not s.accepted]
        floor = 100 * (data.original.accuracy - data.tolerance)
        plt.horizontal_line(floor, color="gray")
        if data.target is not None:
            plt.vertical_line(100 * data.target, color="magenta")
        plt.plot(*zip(*path), color="cyan", marker="braille", label="accepted")
        plt.scatter(*zip(*path), color="cyan", marker="●")
        if back:
            plt.scatter(*zip(*back), color="red", marker="×", label="rolled back")
        xs = [x for x, _ in path + back] + ([100 * data.target] if data.target is not None else [])
        ys = [y for _, y in path + back] + [floor]
        plt.xlim(min(xs) - 2, 101)
        plt.ylim(min(ys) - 1, max(ys) + 1)
        title = f"tolerance: accuracy ≥ {floor:.1f}%"
        if data.target is not None:
            title += f" · target {100 * data.target:.0f}% of the parameters"
        plt.title(title)


class StepTable(DataTable):
    """One row per tried move."""

    COLUMNS = ("step", "layer", "removed", "left", "params", "MACs", "accuracy", "")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns(*self.COLUMNS)

    def add_step(self, step: Step, original: Measure) -> None:
        verdict = Text("accepted", style="green") if step.accepted else Text("rolled back", style="red")
        self.add_row(
            str(step.index), plain(step.layer), f"-{step.channels_removed}", str(step.channels_left),
            f"{percent(step.parameters, original.parameters):.1f}%", f"{percent(step.macs, original.macs):.1f}%",
            f"{100 * step.accuracy:.1f}%", verdict,
        )
        self.move_cursor(row=self.row_count - 1)


class NumberField(Input):
    """An input for a number that takes only `characters`: other keys (s, x, e, c, q, ?) act on the screen, as the
    footer shows them, from every field."""

    def __init__(self, value: str, characters: str, **kwargs: object) -> None:
        super().__init__(value, restrict=f"[{re.escape(characters)}]*", compact=True, **kwargs)
        self.characters = characters

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return character is not None and character in self.characters

    async def _on_key(self, event: events.Key) -> None:
        if event.is_printable and not self.check_consume_key(event.key, event.character):
            event.prevent_default()  # not typed here: it goes on up to the screen's and the app's keys
            return
        await super()._on_key(event)


class PruneForm(Vertical):
    """The settings of a run; `read` turns them into `PruneSettings` or says what is wrong."""

    class Ready(Message):
        """The form is mounted (after the screen's first frame): its fields can take focus and Start its values."""

    def __init__(self, settings: PruneSettings, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.settings = settings

    def compose(self) -> ComposeResult:
        s = self.settings
        fields = [
            ("criterion", Select([(c, c) for c in CRITERIA], value=s.criterion, allow_blank=False,
                                 id="criterion", compact=True)),
            ("target params", NumberField(_text(s.target_params), DECIMAL, placeholder="none, e.g. 0.5", id="target",
                                          tooltip="stop at this fraction of the original parameters")),
            ("tolerance", NumberField(_text(s.tolerance), DECIMAL, id="tolerance",
                                      tooltip="largest accuracy drop from the original allowed")),
            ("max steps", NumberField(_text(s.max_steps), WHOLE, placeholder="no limit", id="max-steps",
                                      tooltip="stop after this many accepted moves")),
            ("fine-tune batches", NumberField(_text(s.finetune_batches), WHOLE, id="finetune",
                                              tooltip="batches of fine-tuning after each move (0: none)")),
        ]
        for label, widget in fields:
            with Horizontal(classes="field"):
                yield Label(label)
                yield widget
        with Horizontal(id="prune-buttons"):
            yield Button("Start", variant="primary", id="start", compact=True)
            yield Button("Stop", variant="error", id="stop", compact=True, disabled=True)

    def on_mount(self) -> None:
        self.post_message(self.Ready())

    def read(self) -> PruneSettings:
        """The settings in the form; ValueError naming the field that is wrong."""
        target = self._number("target", "target params", float)
        max_steps = self._number("max-steps", "max steps", int)
        tolerance = self._number("tolerance", "tolerance", float)
        finetune = self._number("finetune", "fine-tune batches", int)
        settings = replace(
            self.settings, criterion=self.query_one("#criterion", Select).value, target_params=target,
            tolerance=self.settings.tolerance if tolerance is None else tolerance, max_steps=max_steps,
            finetune_batches=self.settings.finetune_batches if finetune is None else finetune,
        )
        settings.check()
        return settings

    def _number(self, id: str, label: str, kind: type) -> float | int | None:
        text = self.query_one(f"#{id}", Input).value.strip()
        if not text:
            return None
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{label}: {text!r} is not {'a whole number' if kind is int else 'a number'}") from None


def _text(value: float | int | None) -> str:
    return "" if value is None else str(value)


def titled(widget: W, title: str, *, can_focus: bool = True) -> W:
    """`widget` with its border's title (set before it is mounted, which may be after the first frame)."""
    widget.border_title = title
    widget.can_focus = widget.can_focus and can_focus
    return widget


class PruneScreen(Screen[None]):
    """Greedy pruning of a copy of the workspace's model, live; save it or export its report when it ends."""

    COMMANDS = Screen.COMMANDS | {PruneCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "leave", "Back", id="back"),
        Binding("s", "start", "Start", id="start-pruning"),
        Binding("x", "stop", "Stop", id="stop-pruning"),
        Binding("e", "export", "Export", id="export"),
        Binding("c", "compare", "Compare", id="compare"),
    ]
    REFRESH_INTERVAL = 0.5  # plots and status redraw at most twice a second

    running: reactive[bool] = reactive(False, init=False)

    def __init__(self, controller: RunController, settings: PruneSettings = PruneSettings()) -> None:
        """Prune the controller's model, measured with the explorer's settings as they are now; a report of the
        pruned model measures the explorer's layers."""
        super().__init__()
        workspace = controller.workspace
        self.controller = controller
        self.workspace = workspace
        self.analysis = controller.settings
        self.report_layers = list(controller.measured)
        self.settings = settings
        self.job: Job | None = None
        self.run_settings: PruneSettings | None = None
        self._comparing: Job | None = None  # the pruned model's analysis for the comparison
        self._original: AnalysisResult | None = None
        self.steps: list[Step] = []
        self.original: Measure | None = None
        self.pruned: tuple[nn.Module, PruneLog] | None = None
        self.saved: Path | None = None
        self._activity = ""  # what the running job does, shown with the time it has run
        self._started = 0.0
        self._dirty = False
        self._names = workspace.index.map_names(conv_layers(workspace))
        self.gave_up = False

    def compose(self) -> ComposeResult:
        # The form and the status come in the first frame; the plots, the steps and the save bar (below the form,
        # empty until a run) are mounted just after it, so that `g` shows the screen at once.
        width, height = self.app.size
        self.set_class(width < COMPACT_WIDTH or height < COMPACT_HEIGHT, "-compact")  # not a restyle once shown
        with VerticalScroll(id="prune-body", can_focus=False):  # ↓ and page down scroll it from any field
            yield Static("small terminal: scroll ↓ for the plots and the steps", id="prune-hint")
            with Horizontal(id="prune-top"):
                with titled(Vertical(id="prune-side"), "Greedy pruning"):
                    yield Lazy(PruneForm(self.settings, id="prune-form"))
                    yield Static(self._about(), id="prune-about")
                with Lazy(Vertical(id="prune-plots")):
                    # Tab follows the form, the steps and the save bar; never the plots.
                    yield titled(AccuracyPlot(id="prune-accuracy"), "Accuracy against parameters", can_focus=False)
                    yield titled(EntropyCurve(id="prune-curve"), "Entropy curve: original and now", can_focus=False)
            yield Lazy(titled(StepTable(id="prune-steps"), "Steps"))
            with Lazy(titled(Horizontal(id="prune-save"), "Pruned model")):
                yield Label("Save as")
                yield Input(self._default_out(), id="save-path", compact=True)
                yield Button("Save", variant="primary", id="save", compact=True)
                yield Button("Export report…", id="export", compact=True)
                # short labels leave the file name room at 80 columns
                yield Button("Compare", id="compare", compact=True, tooltip="Compare with the original")
        yield Static("", id="prune-status")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(self.REFRESH_INTERVAL, self._refresh)
        self._say("set the options and press Start (or s)")

    def on_prune_form_ready(self) -> None:
        self.query_one("#criterion", Select).focus()
        self.refresh_bindings()  # Start can be pressed now

    def on_resize(self) -> None:
        width, height = self.size
        self.set_class(width < COMPACT_WIDTH or height < COMPACT_HEIGHT, "-compact")

    def on_unmount(self) -> None:
        self._cancel(at_once=True)

    def _cancel(self, *, at_once: bool = False) -> None:
        """Ask the job, if any, to stop after its current step (keeping the best so far), or `at_once`."""
        if self.job is not None:
            self.job.cancel.set()
            if at_once:
                self.job.abort()
                gc.unfreeze()  # no message will end the run on this screen now: release what it froze

    def _about(self) -> str:
        convs = len(conv_layers(self.workspace))
        return (f"Prunes a copy of the model ({self.workspace.info.parameters:,} parameters, {convs} conv layers); "
                "the explorer's model is untouched. Stop ends after the current step and keeps the best so far.")

    def _default_out(self) -> str:
        path = self.workspace.info.path
        return f"./{Path(path).stem if path else 'demo'}-pruned.pt"

    # Start and stop.

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {"start": self.action_start, "stop": self.action_stop, "save": self.save,
                   "export": self.action_export, "compare": self.action_compare}
        actions[event.button.id]()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "save-path":
            self.save()

    def action_start(self) -> None:
        if self.running:
            return
        try:
            settings = self.query_one(PruneForm).read()
        except ValueError as exc:
            self._say(for_interface(exc), error=True)
            return
        if self.pruned is not None and self.saved is None:
            question = "The pruned model is not saved. Start a new run and discard it?"
            self.app.push_screen(ConfirmQuit(question, yes="Discard", no="Keep"),
                                 lambda discard: self._begin(settings) if discard else None)
        else:
            self._begin(settings)

    def _begin(self, settings: PruneSettings) -> None:
        self.steps, self.original, self.pruned, self.saved = [], None, None, None
        self.query_one(StepTable).clear()
        self.query_one(AccuracyPlot).data = None
        self.query_one("#prune-curve", EntropyCurve).data = None
        self.set_class(False, "-finished")
        self._started = time.monotonic()
        self._activity = "starting"
        self.running = True
        self._refresh(force=True)
        self.run_settings = settings
        self.job = self.controller.start_prune(settings, self.analysis, self.post_message)

    def action_stop(self) -> None:
        if self.running and not self.job.cancel.is_set():
            self._cancel()
            self._activity = "stopping after the current step"
            self._refresh(force=True)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Start while idle, Stop while running, Save, Export and Compare once there is a pruned model (dimmed
        before)."""
        if action == "start":
            return not self.running and bool(self.query(PruneForm))  # the form comes just after the first frame
        if action == "stop":
            return self.running
        if action in ("save", "export", "compare"):
            return self.pruned is not None or None
        return True

    def watch_running(self, running: bool) -> None:
        # Pruning makes much garbage, and each full collection scans the whole heap while holding the GIL:
        # during a run, what exists before it (PyTorch, Textual, the analysis) is left out of them.
        if running:
            gc.freeze()
        else:
            gc.unfreeze()
        self.refresh_bindings()
        self.query_one("#start", Button).disabled = running
        self.query_one("#stop", Button).disabled = not running
        for widget in self.query_one(PruneForm).query("Input, Select"):
            widget.disabled = running
        self.set_class(running, "-running")

    # Messages up from the worker.

    def on_prune_waiting(self, message: PruneWaiting) -> None:
        self._activity = "waiting for the explorer's analysis to finish (it holds the model)"
        self._dirty = True

    def on_prune_phase(self, message: PrunePhase) -> None:
        stopping = self.job is not None and self.job.cancel.is_set()
        self._activity = f"stopping after the current step ({message.text})" if stopping else message.text
        self._dirty = True

    def on_prune_step(self, message: PruneStep) -> None:
        self.original = message.original
        self.steps.append(message.step)
        self.query_one(StepTable).add_step(message.step, message.original)
        self._dirty = True

    def on_prune_ended(self, message: PruneEnded) -> None:
        self.running = False
        if message.log is None:
            self._say("stopped before it began")
        else:
            self.pruned = (message.model, message.log)
            self.refresh_bindings()
            self.original = message.log.original
            self.set_class(True, "-finished")
            self._say(self._summary(message.log))
            self.call_after_refresh(self._offer_save)  # once the save bar is laid out
        self._refresh(force=True)

    def _offer_save(self) -> None:
        """Focus the file name, scrolled into view: on a small terminal the save bar is below the plots."""
        field = self.query_one("#save-path", Input)
        field.focus()
        field.scroll_visible(animate=False)

    def on_prune_failed(self, message: PruneFailed) -> None:
        self.running = False
        self._say(f"failed: {for_interface(message.error)}", error=True)
        self.notify(f"pruning failed: {self.controller.describe(message.error)}", severity="error",
                    timeout=10)
        self._refresh(force=True)

    def _summary(self, log: PruneLog) -> str:
        o, f = log.original, log.final
        warnings = "".join(f" · warning: {w}" for w in log.warnings)
        return (f"done, {log.stopped_because}: parameters {percent(f.parameters, o.parameters):.1f}%, "
                f"MACs {percent(f.macs, o.macs):.1f}%, {log.measure} {100 * o.accuracy:.1f}% → "
                f"{100 * f.accuracy:.1f}%{warnings}")

    # Attributes down, throttled.

    def _refresh(self, force: bool = False) -> None:
        if self.running:
            self._say(f"{self._activity}… · {time.monotonic() - self._started:.0f} s")
        if not (self._dirty or force):
            return
        self._dirty = False
        if self.original is None:
            return
        settings = self.run_settings
        self.query_one(AccuracyPlot).data = AccuracyData(self.original, list(self.steps), settings.tolerance,
                                                         settings.target_params)
        log = self.pruned[1] if self.pruned else None
        kept = [step for step in self.steps if step.accepted]
        now = log.final.curve if log else (kept[-1].curve if kept else None)
        before = np.asarray(self.original.curve)
        if len(before) == len(self._names):
            label = "final" if log else "now"
            self.query_one("#prune-curve", EntropyCurve).data = CurveData(
                self._names, before, np.full_like(before, np.nan), np.full_like(before, np.nan),
                None if now is None else np.asarray(now), None, units(self.analysis), labels=("original", label),
            )

    def _say(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#prune-status", Static)
        status.update(plain(text))
        status.set_class(error, "-error")

    # Save and export.

    def save(self, force: bool = False) -> None:
        """Save the pruned model and its log; asks before replacing a file, never replaces the input model."""
        if self.pruned is None:
            return
        text = self.query_one("#save-path", Input).value.strip()
        if not text:
            self._say("type a file name to save the pruned model as, e.g. pruned.pt", error=True)
            return
        out = Path(text).expanduser()
        try:
            check_output(out, self.workspace.inputs, force=force)
        except FileExistsError:
            question = f"{out} or its log {out.with_suffix('.json').name} already exists. Replace them?"
            self.app.push_screen(ConfirmQuit(question, yes="Replace", no="Cancel"),
                                 lambda yes: self.save(force=True) if yes else None)
            return
        except (OSError, ValueError) as exc:
            self._say(for_interface(exc), error=True)
            return
        self._save(out)

    @work(thread=True, exclusive=True, group="save", exit_on_error=False)
    def _save(self, out: Path) -> None:
        model, log = self.pruned
        try:
            log_path = save_pruned(model, log, self.workspace, out)
        except Exception as exc:
            self.post_message(PruneSaveFailed(exc))
        else:
            self.post_message(PruneSaved(out, log_path))

    def on_prune_saved(self, message: PruneSaved) -> None:
        self.saved = message.path
        self._say(f"saved {message.path} and {message.log_path.name}")

    def on_prune_save_failed(self, message: PruneSaveFailed) -> None:
        self._say(f"not saved: {self.controller.describe(message.error)}", error=True)

    def action_export(self) -> None:
        """Export a report of the pruned model, analysed afresh on the workspace's images."""
        if self.pruned is None:
            self.notify("export a report once pruning has finished", severity="warning", timeout=4)
            return
        model, log = self.pruned
        source = self.controller.report_of_model(model, self.report_layers, self.analysis,
                                                 path=None if self.saved is None else str(self.saved), pruning=log)
        note = (f"A report of the pruned model ({percent(log.final.parameters, log.original.parameters):.1f}% "
                f"of the parameters), analysed afresh on the {len(self.workspace.images)} images of the explorer.")
        self.app.push_screen(ExportDialog(source, screenshot=self.app.export_screenshot(), note=note,
                                          title="Export report of the pruned model", inputs=self.workspace.inputs,
                                          tracebacks=self.controller.tracebacks),
                             self._exported)

    def _exported(self, path: Path | None) -> None:
        if path is not None:
            self._say(f"report of the pruned model written to {path}")

    # Leaving.

    def action_compare(self) -> None:
        """The pruned model against the original on the explorer's images: analysed anew, then side by side."""
        original = self.controller.analysed_so_far()
        if self.pruned is None or original is None or not original.images:
            self._say("compare needs a pruned model and the explorer's analysis of the original", error=True)
            return
        model, _ = self.pruned
        self._original = original
        self._say("analysing the pruned model on the explorer's images…")
        self._comparing = self.controller.analyse_model(model, original, self.post_message)

    def on_model_analysed(self, message: ModelAnalysed) -> None:
        if message.job is not self._comparing:
            return
        if message.error is not None:
            self._say(f"compare failed: {self.controller.describe(message.error)}", error=True)
        elif message.result is not None:
            model, _ = self.pruned
            parameters = (self.workspace.info.parameters, sum(p.numel() for p in model.parameters()))
            comparison = compare(self._original, message.result, ("original", "pruned"), parameters)
            self._say("compared; esc comes back here")
            self.app.push_screen(ModelsScreen(comparison, self.workspace, (self._original, message.result)))

    def quit_question(self) -> str | None:
        return self.leaving_question("quit")

    def still_fits(self, controller: RunController) -> bool:
        """Whether this screen can be shown again: the explorer's settings and measured layers are those it was
        built with, and leaving it gave nothing up (a run or an unsaved model)."""
        return (controller.settings == self.analysis and list(controller.measured) == self.report_layers
                and not self.gave_up)

    def leaving_question(self, leave: str) -> str | None:
        """What leaving would lose, as a question, or None when nothing is lost."""
        if self.running:
            return f"Pruning is running. Stop it and {leave}? Its model is lost unless you stay and save it."
        if self.pruned is not None and self.saved is None:
            return f"The pruned model is not saved. {leave.capitalize()} anyway?"
        return None

    def action_leave(self) -> None:
        """Back to the explorer, asking first if that stops a run or loses an unsaved model."""
        question = self.leaving_question("go back")
        if question is None:
            self.dismiss()
        else:
            self.app.push_screen(ConfirmQuit(question, yes="Go back", no="Stay"), self._leave_if)

    def _leave_if(self, leave: bool | None) -> None:
        if leave:
            self._cancel(at_once=True)
            self.gave_up = True  # `g` builds a new screen rather than show what the user let go
            self.dismiss()
