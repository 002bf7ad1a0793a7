"""The explorer screen: layer tree, saliency, entropy curve and superization steps, with the session's analysis."""

from __future__ import annotations

import gc
import time
from dataclasses import replace
from pathlib import Path, PurePath
from typing import ClassVar

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import var
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static, Tree

from semiotui.engine import AnalysisSettings, TargetSetting
from semiotui.engine.device import describe_device
from semiotui.engine.layers import format_shape
from semiotui.engine.saliency import METHODS, module_of

from .compare import CompareScreen, largest_step
from .controller import RunController
from .curve import CurveData, EntropyCurve, units
from .errors import words_in
from .export import ExportDialog
from .heatmap import VIEWS
from .layer_tree import LayerPane, LayerTree, abbreviate
from .loading import TITLES
from .messages import JobNotice, MapsDrawn, MeasureToggled, RunChanged
from .palette import SemiotuiCommands, target_text
from .plain import plain
from .prune_screen import PruneScreen
from .run_state import RunState
from .saliency import SaliencyContent, SaliencyView, describe_image
from .status import StatusLine, fit_footer, memory_in_use
from .steps import StepsView

COMPACT_WIDTH, COMPACT_HEIGHT = 110, 32


class PaneColumn(VerticalScroll, can_focus=False):
    """The panes right of the tree; in a small terminal they scroll instead of shrinking."""


class ExplorerScreen(Screen):
    """Explore one workspace: pick a layer, see its map, the entropy curve and the superization steps.

    A view of the run controller's analysis: what the user does changes the controller's settings, and its
    messages redraw the panes.
    """

    COMMANDS = Screen.COMMANDS | {SemiotuiCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "find", "Find", key_display="/", id="find"),
        Binding("n", "image(1)", "Next", id="next-image"),
        Binding("p", "image(-1)", "Prev", show=False, id="previous-image"),
        Binding("c", "compare", "Compare", id="compare"),
        Binding("m", "cycle('method')", "Method", id="method"),
        Binding("t", "cycle('target')", "Target", show=False, id="target"),
        Binding("v", "view", "View", show=False, id="view"),
        Binding("a", "against", "Against control", show=False, id="against-control"),
        Binding("e", "export", "Export", id="export"),
        Binding("g", "prune", "Prune", id="prune"),
    ]
    REFRESH_INTERVAL = 0.1  # the analysis redraws the tree and status at most ~10 times a second
    SLOW_INTERVAL = 1.0  # and the curve and steps (plotext, statistics) at most once a second
    CURVE_DELAY = 0.2  # the curve follows the selection once keys pause
    FREEZE_DELAY = 1.0  # the heap is frozen this long after the explorer shows (`_freeze_heap`)

    layer: var[str | None] = var(None, init=False)
    """The module shown in the saliency pane and marked on the curve."""
    image: var[int] = var(0, init=False)
    """Which image is shown (its position in the workspace's images)."""

    def __init__(self, controller: RunController, *, show_timings: bool = True) -> None:
        """`show_timings=False` hides rates, times and memory, for reproducible screenshots."""
        super().__init__()
        self.controller = controller
        self.workspace = controller.workspace
        self.show_timings = show_timings
        self._dirty = False
        self._slow_at = 0.0
        self._shown: tuple[object, ...] = ()
        self._curve_timer: Timer | None = None
        self._pictures: dict[int, np.ndarray | None] = {}
        self._compare: CompareScreen | None = None  # the compare view while it is open
        self._prune_screen: PruneScreen | None = None  # kept between visits: `g` shows it again as it was left
        self.largest: str | None = None  # the layer the current image's entropy drops into most
        self.against = True  # the curve against the control (model minus control) once there is one; `a` toggles
        self._heap_frozen = False  # once frozen, a later freeze collects first (`_freeze_heap`)
        controller.listen(self.post_message)

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield LayerPane(self.workspace.index, self.controller.measured, id="layers")
            with PaneColumn(id="panes"):
                yield Static("small terminal: scroll ↓ or tab for more panes", id="compact-hint")
                with Horizontal(id="top"):
                    yield SaliencyView(id="saliency")
                    with VerticalScroll(id="steps"):
                        yield StepsView()
                yield EntropyCurve(id="curve")
        yield StatusLine(id="status")
        yield Footer()

    def on_screen_resume(self) -> None:
        if not gc.get_freeze_count():
            self.set_timer(self.FREEZE_DELAY, self._freeze_heap)

    def _freeze_heap(self) -> None:
        """Keep what exists (modules, the model, the screens) out of full garbage collections, which scan every
        object holding the GIL: 200–300 ms with PyTorch and Textual loaded, and they landed on key presses
        (benchmarks/responsiveness.py). The pruning screen releases the freeze when its run ends: taken again on
        coming back, once what died meanwhile (that screen, its model) is collected."""
        if gc.get_freeze_count():
            return
        if self._heap_frozen:
            gc.collect()
        gc.freeze()
        self._heap_frozen = True

    def on_mount(self) -> None:
        for pane, title in TITLES.items():
            self.query_one(pane).border_title = title
        status = self.query_one(StatusLine)
        status.show_timings = self.show_timings
        device = self.controller.device
        status.device = describe_device(device) if self.show_timings else device.type
        if self.workspace.origin is not None:
            status.device = f"saved report {self.workspace.origin}"
        status.total, status.settings = len(self.workspace.images), self._describe_settings(self.controller.settings)
        spatial = [info.name for info in self.workspace.index if info.spatial]
        first = (self.controller.measured or spatial or [info.name for info in self.workspace.index] or [None])[0]
        if first is not None:
            self.show_layer(first)
        self.query_one(LayerTree).focus()
        for warning in self.workspace.warnings:
            self.notify(words_in(warning), severity="warning", timeout=8)
        self.set_interval(self.REFRESH_INTERVAL, self._refresh_views)
        if self.show_timings:
            self.set_interval(1.0, self._update_memory)
        self.call_after_refresh(self.restart_analysis)

    def on_resize(self) -> None:
        width, height = self.size
        self.set_class(width < COMPACT_WIDTH or height < COMPACT_HEIGHT, "-compact")
        fit_footer(self.query_one(Footer), width)
        self.query_one(LayerTree).compact = width < COMPACT_WIDTH

    # Messages up from the controller.

    def restart_analysis(self, settings: AnalysisSettings | None = None, measured: list[str] | None = None) -> None:
        """Start the analysis again with these settings and layers (the current ones where not given)."""
        self.controller.restart_analysis(settings, measured)
        self._dirty = True

    def on_run_changed(self, message: RunChanged) -> None:
        self._dirty = True
        if message.now:
            self._slow_at = 0.0  # the run ended or its verdicts changed: redraw the steps and the curve now
            self._refresh_views()

    def on_maps_drawn(self, message: MapsDrawn) -> None:
        if not self._panes_gone:
            self._show_saliency()
            self._show_compare()

    def on_job_notice(self, message: JobNotice) -> None:
        self.notify(message.text, severity=message.severity, timeout=message.timeout)

    @property
    def _panes_gone(self) -> bool:
        """True once the panes are gone at exit, when a timer's last callback may still run."""
        return not self.query(StatusLine)

    def on_unmount(self) -> None:
        self.controller.stop_analysis()

    # Attributes down: the widgets get what they show.

    def _refresh_views(self) -> None:
        """Push the current run's numbers into the widgets, if anything arrived since the last time."""
        if not self._dirty or self.controller.run_state is None or self._panes_gone:
            return
        self._dirty = False
        run = self.controller.run_state
        entropy, empty = {}, {}
        for name in run.layers:
            first = self.workspace.index[name].map_names[0]
            value, share = run.mean_entropy(first), run.empty_share(first)
            if value is not None:
                entropy[name] = value
            if share:
                empty[name] = share
        tree = self.query_one(LayerTree)
        tree.set_entropy(entropy, empty)
        if run.flow is not None:
            tree.set_branches({module_of(m) for m in run.flow.branches})
        self._show_status()
        if (run.run_id, self.image in run.rows, run.running) != self._shown[:3]:
            self._show_saliency()
        now = time.monotonic()
        if not run.running or now - self._slow_at >= self.SLOW_INTERVAL:
            self._slow_at = now
            self.query_one(StepsView).update(run.steps())
            self.query_one("#steps").border_subtitle = self._control_note(run)
            self._show_curve()
            self._show_compare()

    def _show_selection(self) -> None:
        """The saliency pane now; the curve (slower to draw) once the keys pause."""
        self._show_saliency()
        self._show_compare()
        if self._curve_timer is not None:
            self._curve_timer.stop()
        self._curve_timer = self.set_timer(self.CURVE_DELAY, self._show_curve)

    def _show_saliency(self) -> None:
        run, name = self.controller.run_state, self.layer
        if name is None:
            return
        if run is not None:
            self._shown = (run.run_id, self.image in run.rows, run.running)
        info = self.workspace.index[name]
        view = self.query_one(SaliencyView)
        details = f" · {info.type} {format_shape(info.output_shape)}"
        room = max(8, view.size.width - 4 - len(details))  # the title is never cut: the name is abbreviated first
        view.border_title = plain(abbreviate(name, room) + details)
        view.content = self.saliency_content(self.image, name)
        row = run.rows.get(self.image) if run else None
        step = largest_step(row, run.flow) if row is not None else None
        self.largest = None if step is None else module_of(run.map_names[step])
        self.query_one(LayerTree).largest = self.largest

    def saliency_content(self, image: int, name: str, map_name: str | None = None) -> SaliencyContent:
        """Image `image` with the map of layer `name` (its first call unless `map_name`), or why there is none.

        A map the analysis did not keep is computed in a worker when the model is here.
        """
        run = self.controller.run_state
        info = self.workspace.index[name]
        map_name = map_name or (info.map_names[0] if info.map_names else None)
        row = run.rows.get(image) if run else None
        images = self.workspace.images
        caption = Text(PurePath(row.name if row else images.names[image]).name, style="bold")
        caption.append(f" · image {image + 1}/{len(images)}", style="dim")
        saliency, message = None, ""
        if row is not None:
            caption.append("\n").append(describe_image(row, self.workspace.class_names))
        if not info.spatial:
            message = f"no spatial map (output {format_shape(info.output_shape)})"
        elif run is None or name not in run.layers:
            if not self.controller.has_model:
                message = "not measured in this report"
            elif name not in self.controller.measured:
                message = "not measured: space in the tree measures it"
            else:
                message = "analysing…"
        elif row is None:
            unreadable = dict(images.skipped).get(images.names[image])
            if unreadable is not None:
                message = f"skipped: {unreadable}"
            else:
                message = "analysing…" if run.running else "no result for this image"
        elif row.empty is not None and row.empty[run.map_names.index(map_name)]:
            caption.append("\nH: none, empty map")
            message = ("empty map: constant (all zero after the method's ReLU), no sign to measure; "
                       "left out of the curve and the steps")
        else:
            value = row.entropy[run.map_names.index(map_name)]
            caption.append(f"\nH = {value:.2f} {units(run.settings)}")
            mean = run.mean_entropy(map_name)
            if mean is not None:
                caption.append(f" · mean {mean:.2f}", style="dim")
            share = run.empty_share(map_name)
            if share:
                caption.append(f" · empty for {share:.0%} of images", style="dim")
            if info.calls > 1:
                caption.append(f" · call {info.map_names.index(map_name) + 1} of {info.calls}", style="dim")
            if row.maps is not None:
                saliency = row.maps.get(map_name)
            else:
                message = self._missing_map(image)
        return SaliencyContent(self._picture(image), saliency, caption, message)

    def _missing_map(self, image: int) -> str:
        """Why an image's map is not drawn yet; asks for it when the model is here."""
        if not self.controller.has_model:
            kept = sum(row.maps is not None for row in self.controller.run_state.rows.values())
            return f"no saved map: the report kept maps for {kept} of {len(self.workspace.images)} images"
        self.controller.request_maps([image])
        return "computing the map…"

    def _picture(self, index: int) -> np.ndarray | None:
        if index not in self._pictures:
            picture = self.workspace.images.image(index)
            self._pictures[index] = None if picture is None else np.asarray(picture)
        return self._pictures[index]

    def _show_compare(self) -> None:
        """The compare view, when it is open, gets the run's results and the current image."""
        # Not before it is mounted: a refresh can come while `action_compare` awaits the push.
        compare = self._compare
        if compare is not None and compare.is_mounted and self.controller.run_state is not None:
            compare.show(self.controller.run_state, self.image)

    def _show_curve(self) -> None:
        if self._panes_gone:
            return
        run = self.controller.run_state
        curve = self.query_one(EntropyCurve)
        if run is None or run.stats.count == 0:
            curve.data = None
            return
        low, high = run.stats.ci95(run.settings.entropy_range)
        row = run.rows.get(self.image)
        info = self.workspace.index[self.layer] if self.layer else None
        first = info.map_names[0] if info and info.map_names else None
        self.query_one(StepsView).selected = first
        main = [j for j in range(len(run.map_names)) if run.flow is None or run.flow.main[j]]  # the curve's path
        steps = run.steps() if run.control is not None else None
        selected = main.index(run.map_names.index(first)) if first in run.map_names and run.map_names.index(first) in main else None
        names = [run.map_names[j] for j in main]
        ctl = None if steps is None else steps.control
        if ctl is not None and self.against:  # the model's entropy minus its shuffled copies', layer by layer
            half = ctl.level_half_width
            excess = ctl.excess[main]
            curve.data = CurveData(
                names, excess, excess - half[main], excess + half[main],
                row.entropy[main] - ctl.mean[main] if row else None, selected, units(run.settings),
                labels=(f"model − control (n={ctl.images}, {ctl.draws} networks)", "this image − control"),
                control=np.zeros(len(main)), against=True,
            )
            return
        curve.data = CurveData(
            names, run.stats.mean[main], low[main], high[main],
            row.entropy[main] if row else None, selected, units(run.settings),
            labels=(f"dataset mean (n={run.stats.count})", "this image"),
            control=None if ctl is None else ctl.mean[main],
        )

    def _control_note(self, run: RunState) -> str:
        """What the verdicts stand on: the control networks, while they run and once done."""
        control = self.workspace.control
        steps = run.steps()
        if run.control_state == "done" and steps is not None and steps.control is not None:
            return f"vs {steps.control.draws} shuffled copies"
        if run.control_state == "none" or control is None:
            return "no control: drops only"
        if run.control_state == "running":
            return f"control {run.control_done}/{control.draws}…"
        return "control after the analysis"

    def _show_status(self) -> None:
        run = self.controller.run_state
        status = self.query_one(StatusLine)
        if run.error:
            status.phase = "failed"
        elif run.finished:
            status.phase = "cancelled" if run.cancelled else "done"
        else:
            status.phase = "running" if run.done else "starting"
        status.done, status.total, status.rate, status.seconds = run.done, run.total, run.rate, run.seconds
        status.settings = self._describe_settings(run.settings)
        status.accuracy = run.accuracy_text(top5=len(self.workspace.class_names or []) >= 10)
        status.control = self._control_note(run) if run.control_state == "running" else ""

    def _describe_settings(self, s: AnalysisSettings) -> str:
        return f"{s.method} · {s.estimator} · {target_text(s.target, self.workspace.class_names)}"

    def _update_memory(self) -> None:
        if self._panes_gone:
            return
        self.query_one(StatusLine).memory = memory_in_use(self.controller.device)

    def watch_layer(self) -> None:
        if self.is_mounted:
            self._show_selection()

    def watch_image(self) -> None:
        self.controller.keep_maps_of(self.image)  # maps of images no longer shown: dropped unless under way
        if self.is_mounted:
            self._show_selection()

    # What the user does.

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data is not None:
            self.layer = event.node.data.name

    def on_measure_toggled(self, event: MeasureToggled) -> None:
        if self._without_model("measuring another layer"):
            return
        name = event.layer.name
        chosen = set(self.controller.measured) ^ {name}
        if not chosen:
            self.notify("at least one layer must be measured", severity="warning")
            return
        measured = [info.name for info in self.workspace.index if info.name in chosen]
        self.query_one(LayerTree).set_measured(measured)
        self.restart_analysis(measured=measured)
        self._show_selection()

    def show_layer(self, name: str) -> None:
        """Select a layer and move the tree's cursor to it."""
        self.query_one(LayerTree).select_layer(name)
        self.layer = name

    def targets(self) -> list[tuple[TargetSetting, str]]:
        """The targets this workspace allows, with how they read."""
        names = self.workspace.class_names
        options: list[tuple[TargetSetting, str]] = [("predicted", target_text("predicted", names))]
        labels = self.workspace.images.labels
        if len(labels) and all(label >= 0 for label in labels):
            options.append(("label", target_text("label", names)))
        classes = len(names) if names else (self.controller.run_state.classes if self.controller.run_state else 0)
        options += [(i, target_text(i, names)) for i in range(classes)]  # any class, by name or number
        return options

    def change_settings(self, **changes: object) -> None:
        """Change method, estimator or target, and restart the analysis if anything changed."""
        settings = replace(self.controller.settings, **changes)
        if settings == self.controller.settings or self._without_model(f"changing the {', '.join(changes)}"):
            return
        self.restart_analysis(settings)
        self._show_selection()
        self._show_status()

    def action_cycle(self, setting: str) -> None:
        """Move to the next saliency method, or target (predicted ↔ label)."""
        if self._without_model(f"changing the {setting}"):
            return
        if setting == "target":
            choices = [target for target, _ in self.targets() if not isinstance(target, int)]
        else:
            choices = list(METHODS)
        current = getattr(self.controller.settings, setting)
        following = choices[(choices.index(current) + 1) % len(choices)] if current in choices else choices[0]
        self.change_settings(**{setting: following})
        self.notify(f"{setting}: {following}", timeout=2)

    def _without_model(self, what: str) -> bool:
        """True, with a notice, when this is a saved report: `what` needs the model."""
        if self.controller.has_model:
            return False
        self.notify(f"{what} needs the model, and this is a saved report: open the model with semiotui MODEL",
                    severity="warning", timeout=6)
        return True

    def action_view(self) -> None:
        """The saliency pane: the map over the image, the map alone, the image alone, in turn."""
        view = self.query_one(SaliencyView)
        view.view = VIEWS[(VIEWS.index(view.view) + 1) % len(VIEWS)]

    def action_against(self) -> None:
        """The curve: against the control (model minus its shuffled copies) or the entropy itself, in turn."""
        self.against = not self.against
        self._show_curve()
        if self.controller.run_state is not None and self.controller.run_state.control is None:
            self.notify("the curve is shown against the control once the control has run", timeout=3)

    def action_image(self, step: int) -> None:
        self.image = (self.image + step) % len(self.workspace.images)

    async def action_compare(self) -> None:
        """Open the compare view: this image against the dataset, classes, right against wrong, the mistakes."""
        self._compare = CompareScreen(self.workspace.class_names, self._map_content, self.choose_image, self.run_action,
                                      has_model=self.controller.has_model)
        await self.app.push_screen(self._compare, self._compare_closed)
        self._show_compare()

    def _compare_closed(self, find: bool | None) -> None:
        self._compare = None
        if find:
            self.action_find()

    def _map_content(self, image: int, map_name: str) -> SaliencyContent:
        return self.saliency_content(image, module_of(map_name), map_name)

    def choose_image(self, image: int, layer: str | None = None) -> None:
        """Show image `image`, and with `layer`, at that layer (the compare view's choice)."""
        self.image = image
        if layer is not None:
            self.show_layer(layer)

    def action_find(self) -> None:
        self.query_one(LayerPane).open_find()

    def action_export(self) -> None:
        """Open the export dialog for the analysis shown (what is finished, while it runs)."""
        run = self.controller.run_state
        if run is None:
            return
        result = self.controller.analysed_so_far()
        if result is None:
            self.notify("nothing to export yet: no image is analysed", severity="warning", timeout=4)
            return
        note = ""
        if run.running:
            total = f" of {run.total}" if run.total else ""
            note = (f"The analysis is still running: the report covers the {len(result.images)}{total} images "
                    "finished so far and is marked partial.")
        source = self.controller.report_of_run(result)
        self.app.push_screen(ExportDialog(source, screenshot=self.app.export_screenshot(), note=note,
                                          inputs=self.workspace.inputs, tracebacks=self.controller.tracebacks),
                             self._exported)

    def _exported(self, path: Path | None) -> None:
        if path is not None:
            self.notify(f"report written to {path}", timeout=8)

    def action_prune(self) -> None:
        """Open the pruning screen on a copy of the model."""
        if self._without_model("pruning"):
            return
        if self._prune_screen is None or not self._prune_screen.still_fits(self.controller):
            if self._prune_screen is not None:  # built for other settings, or its model was given up on leaving
                self.app.uninstall_screen(self._prune_screen)
                self._prune_screen.remove()
            self._prune_screen = PruneScreen(self.controller)
            self.app.install_screen(self._prune_screen, f"pruning-{id(self._prune_screen)}")  # not removed when it closes
        self.app.push_screen(self._prune_screen)

    def quit_question(self) -> str | None:
        """What quitting would interrupt (the analysis, then its control), as a question; None when nothing runs."""
        run = self.controller.run_state
        if run is None or run.error is not None:
            return None
        if run.running:
            total = f"/{run.total}" if run.total else ""
            return f"The analysis is running ({run.done}{total} images). Quit anyway?"
        if run.control_state == "running":
            return (f"The control is running ({run.control_done}/{self.workspace.control.draws} networks done); "
                    "the verdicts wait for it. Quit anyway?")
        return None
