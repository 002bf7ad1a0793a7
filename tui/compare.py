"""The compare view (semiotui/docs/METHOD.md §4): an image against the dataset, the classes, right against wrong,
the mistakes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import ClassVar

import numpy as np
from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, OptionList, Tab, Tabs
from textual.widgets.option_list import Option

from semiotui.engine import AnalysisResult, Flow, ImageResult
from semiotui.engine.explain import GroupCurve, Outcomes, class_curves, largest_steps, outcome_curves
from semiotui.engine.saliency import module_of
from semiotui.engine.superization import Superization, summary

from .curve import BackgroundPlot, layer_ticks, units
from .layer_tree import short_names
from .plain import plain
from .run_state import RunState
from .saliency import SaliencyContent, SaliencyView, class_text
from .status import fit_footer

GROUP_COLORS = (  # matplotlib's tab10: ten colours told apart on dark and light backgrounds
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
VIEWS = {"image": "This image", "classes": "Per class", "outcomes": "Right vs wrong"}
# Below this size the view shows one pane at a time (`PANES`, w cycles them): side by side, each plot was a row high.
COMPACT_WIDTH, COMPACT_HEIGHT = 100, 32
PANES = {"images": "Mistakes and maps", "curves": "Curves", "steps": "Steps"}


def largest_step(row: ImageResult, flow: Flow | None = None) -> int | None:
    """Position of the map entered by the image's largest entropy drop along `flow` (None: no step to measure)."""
    step = int(largest_steps(row.entropy[None], None if flow is None else flow.parents)[0])
    return None if step < 0 else step


@dataclass(eq=False)
class Comparison:
    """What the compare view shows, from the rows a run has so far."""

    layers: list[str]  # map names, forward order
    rows: list[ImageResult]  # in image order
    steps: Superization
    classes: dict[str, GroupCurve]
    by_label: bool  # classes are true labels (else predicted classes)
    outcomes: Outcomes | None  # None unless every image has a label
    units: str
    flow: Flow | None = None  # which layer feeds which: the steps follow it

    @classmethod
    def of(cls, run: RunState, class_names: list[str] | None) -> Comparison:
        rows = [run.rows[i] for i in sorted(run.rows)]
        result = AnalysisResult(run.map_names, run.settings, "", rows)
        return cls(
            run.map_names, rows, run.steps(), class_curves(result, class_names),
            all(r.label is not None for r in rows), outcome_curves(result), units(run.settings), run.flow,
        )

    @property
    def mistakes(self) -> list[ImageResult]:
        """The misclassified images, the most confidently wrong first."""
        return sorted((r for r in self.rows if r.label is not None and r.predicted != r.label),
                      key=lambda r: -r.confidence)

    def partner(self, row: ImageResult, drawable: Callable[[ImageResult], bool]) -> ImageResult | None:
        """An image of the same true class with the other outcome: a correct one beside a mistake, and the reverse.

        Among them one whose map can be drawn, then the most confident (as the report's contrast pair).
        """
        if row.label is None:
            return None
        wrong = row.predicted != row.label
        others = [r for r in self.rows if r.label == row.label and (r.predicted == r.label) == wrong]
        return max(others, key=lambda r: (drawable(r), r.confidence), default=None)


@dataclass(eq=False)
class Line:
    """One curve over the maps; an unlabelled line stays out of the legend."""

    label: str | None
    values: np.ndarray
    color: str | tuple[int, int, int]  # a plotext colour name, or RGB


def band(group: GroupCurve, label: str) -> list[Line]:
    """A group's 95% band as two grey lines; none where it is undefined (fewer than two images)."""
    if not (np.isfinite(group.ci_low).all() and np.isfinite(group.ci_high).all()):
        return []
    return [Line(label, group.ci_high, "gray"), Line(None, group.ci_low, "gray")]


@dataclass(eq=False)
class Curves:
    """Lines over the maps, layers marked with vertical lines, a title."""

    names: list[str]
    lines: list[Line]
    title: str
    units: str
    marks: list[int] = field(default_factory=list)  # positions of layers to mark


class GroupPlot(BackgroundPlot):
    """Several entropy curves in one plot (an image and the dataset, classes, outcomes)."""

    data: reactive[Curves | None] = reactive(None)

    def draw(self, data: Curves | None) -> None:
        plt = self.plt
        plt.ylabel(f"H ({data.units})" if data else "H")
        if data is None or not data.names:
            self.title("waiting for the first batch")
            return
        for line in data.lines:
            self.curve(line.values, color=line.color, label=line.label)
        for position in data.marks:
            plt.vertical_line(position + 1, color="magenta")
        layer_ticks(plt, data.names, self.plot_size.width)
        self.title(data.title)


class Significance(Widget):
    """The significant superization steps, named, with the test that found them."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"significance--step"}

    steps: reactive[Superization | None] = reactive(None, always_update=True)

    def render(self) -> RenderableType:
        steps = self.steps
        if steps is None or len(steps.layers) < 2:
            return Text("superization steps: waiting for results", style="dim")
        style = self.get_component_rich_style("significance--step")
        text = Text()
        for k, sentence in enumerate(summary(steps)):
            text.append(sentence + "\n", style=style if k == 0 else "")
        text.rstrip()
        return text


class MistakeList(OptionList):
    """The misclassified images; moving through them makes each the current image, enter opens it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("enter", "select", "Open", id="open-image")]  # in the explorer

    def action_select(self) -> None:
        """Enter with none highlighted (the current image is no mistake) opens the first mistake."""
        if self.highlighted is None and self.option_count and not self.get_option_at_index(0).disabled:
            self.highlighted = 0
        super().action_select()


class CompareScreen(Screen[bool]):
    """Explain decisions: the current image against the dataset band, per-class curves, right against wrong.

    It works for the explorer that opened it: the image and the settings it changes are the explorer's,
    and it closes with True when the user asked to find a layer there.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back", id="back"),
        Binding("c", "close", "Back", show=False, id="compare"),
        Binding("1", "view('image')", "This image", show=False, id="view-image"),
        Binding("2", "view('classes')", "Per class", show=False, id="view-classes"),
        Binding("3", "view('outcomes')", "Right/wrong", show=False, id="view-outcomes"),
        Binding("right,l", "view(1)", "View", key_display="→", id="next-view"),
        Binding("left,h", "view(-1)", "Previous view", show=False, id="previous-view"),
        Binding("slash", "find", "Find", key_display="/", id="find"),
        Binding("n", "explorer('image(1)')", "Next", id="next-image"),
        Binding("p", "explorer('image(-1)')", "Prev", show=False, id="previous-image"),
        Binding("m", "explorer(\"cycle('method')\")", "Method", id="method"),
        Binding("t", "explorer(\"cycle('target')\")", "Target", show=False, id="target"),
        Binding("e", "explorer('export')", "Export", id="export"),
        Binding("w", "pane", "Pane", id="pane"),
    ]

    view: reactive[str] = reactive("image")
    pane: reactive[str] = reactive("images", init=False)  # the one shown on a small terminal

    def __init__(
        self, class_names: list[str] | None, saliency: Callable[[int, str], SaliencyContent],
        choose: Callable[[int, str | None], None], explorer_action: Callable[[str], Awaitable[object]], *,
        has_model: bool
    ) -> None:
        """`saliency(image, map_name)` draws an image's map; `choose(image, layer)` opens an image in the explorer
        (at `layer` unless None); `explorer_action` runs one of the explorer's keys; `has_model` says whether
        missing maps can be computed."""
        super().__init__()
        self.class_names = class_names
        self.saliency = saliency
        self.choose = choose
        self.explorer_action = explorer_action
        self.has_model = has_model
        self.comparison: Comparison | None = None
        self.image = 0
        self._key: tuple[int, int, bool] | None = None
        self._listed: list[int] | None = None

    def compose(self) -> ComposeResult:
        yield Tabs(*(Tab(text, id=f"pane-{pane}") for pane, text in PANES.items()), id="compare-panes")
        with Horizontal(id="compare"):
            with Vertical(id="compare-left"):
                yield MistakeList(id="mistakes")
                with Horizontal(id="compare-maps"):
                    yield SaliencyView(id="this-map")
                    yield SaliencyView(id="partner-map")
            with Vertical(id="compare-right"):
                yield Tabs(*(Tab(text, id=view) for view, text in VIEWS.items()), id="views")
                yield GroupPlot(id="compare-curve")
                yield Significance(id="significance")
        yield Footer()

    def on_resize(self) -> None:
        width, height = self.size
        self.set_class(width < COMPACT_WIDTH or height < COMPACT_HEIGHT, "-compact")
        self.refresh_bindings()
        fit_footer(self.query_one(Footer), width)

    def on_mount(self) -> None:
        self.query_one("#significance").border_title = "Superization steps"
        self.query_one("#compare-panes", Tabs).can_focus = False  # clicked, or w: ← and → stay the views' keys
        self.add_class("-pane-images")
        self.query_one(MistakeList).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Pane only on a small terminal, where the view shows one at a time."""
        return self.has_class("-compact") if action == "pane" else True

    # Attributes down: the app calls `show` as results arrive and the image changes.

    def show(self, run: RunState, image: int) -> None:
        """Show `run`'s results so far around image `image`."""
        key = (run.run_id, run.stats.count, run.finished)
        if run.stats.count and key != self._key:
            self._key, self.comparison = key, Comparison.of(run, self.class_names)
            self.query_one(Significance).steps = self.comparison.steps
        self.image = image
        self._show_mistakes()
        self._show_maps()
        self._show_curves()

    def _row(self, image: int) -> ImageResult | None:
        rows = self.comparison.rows if self.comparison else []
        return next((r for r in rows if r.index == image), None)

    def _drawable(self, row: ImageResult) -> bool:
        return self.has_model or row.maps is not None

    def _show_mistakes(self) -> None:
        listing = self.query_one(MistakeList)
        c = self.comparison
        mistakes = c.mistakes if c else []
        if c is None:
            listing.border_title = "Misclassified"
        elif not c.by_label:
            listing.border_title = "Misclassified: needs labels"
        else:
            listing.border_title = f"Misclassified: {len(mistakes)} of {len(c.rows)}"
        indices = [r.index for r in mistakes]
        if indices != self._listed:
            self._listed = indices
            listing.clear_options()
            listing.add_options([Option(self._describe(r), id=str(r.index)) for r in mistakes])
            if not mistakes:
                why = "no labels to compare with" if c and not c.by_label else "none so far"
                listing.add_option(Option(Text(why, style="dim italic"), disabled=True))
        position = indices.index(self.image) if self.image in indices else None
        if listing.highlighted != position:
            with listing.prevent(OptionList.OptionHighlighted):
                listing.highlighted = position

    def _describe(self, row: ImageResult) -> Text:
        text = Text(PurePath(row.name).name, style="bold")
        text.append(f" {class_text(row.label, self.class_names)} → {class_text(row.predicted, self.class_names)}")
        text.append(f" {row.confidence:.0%}", style="dim")
        if not self._drawable(row):
            text.append(" · no map", style="dim italic")
        return text

    def _show_maps(self) -> None:
        this, other = self.query_one("#this-map", SaliencyView), self.query_one("#partner-map", SaliencyView)
        c, row = self.comparison, self._row(self.image)
        step = largest_step(row, c.flow) if c and row else None
        if step is None:
            waiting = "waiting for this image's result" if row is None else "one layer: no step"
            this.border_title, other.border_title = "This image", "Compared with"
            this.content = SaliencyContent(None, None, Text(), waiting)
            other.content = None
            return
        this.border_title = "This image"
        this.content = self._with_step(self.saliency(row.index, c.layers[step]), row, step)
        partner = c.partner(row, self._drawable)
        label = class_text(row.label, self.class_names)
        if partner is None:
            other.border_title = "Compared with"
            other_outcome = "correct" if row.predicted != row.label else "misclassified"
            why = "no labels" if row.label is None else f"no {other_outcome} {label} to compare with"
            other.content = SaliencyContent(None, None, Text(), why)
        else:
            outcome = "correct" if partner.predicted == partner.label else "misclassified"
            other.border_title = plain(f"{outcome.capitalize()} {label}")
            other.content = self._with_step(self.saliency(partner.index, c.layers[step]), partner, step)

    def _with_step(self, content: SaliencyContent, row: ImageResult, step: int) -> SaliencyContent:
        """The content with its caption saying how much the image's entropy drops into the layer."""
        name = short_names(self.comparison.layers)[step]
        parent = self.comparison.steps.parents[step]
        drop = row.entropy[parent] - row.entropy[step] if parent is not None else np.nan
        shown = f"{drop:+.2f}" if np.isfinite(drop) else "– (an empty map)"
        caption = Text(f"ΔH {shown} into {name}\n", style="bold")
        caption.append_text(content.caption)
        return SaliencyContent(content.image, content.saliency, caption, content.message)

    def _show_curves(self) -> None:
        c = self.comparison
        plot = self.query_one(GroupPlot)
        if c is None:
            plot.data = None
            return
        plot.data = {"image": self._image_curves, "classes": self._class_curves, "outcomes": self._outcome_curves}[
            self.view
        ](c)

    def _image_curves(self, c: Comparison) -> Curves:
        s = c.steps
        dataset = GroupCurve("dataset", s.count, s.mean, s.ci_low, s.ci_high)
        lines = [*band(dataset, "95% CI"), Line(f"dataset mean (n={s.count})", s.mean, "cyan")]
        row = self._row(self.image)
        if row is None:
            return Curves(c.layers, lines, "this image: waiting for its result", c.units)
        name = PurePath(row.name).name
        lines.append(Line(name, row.entropy, "orange"))
        partner = c.partner(row, self._drawable)
        if partner is not None:
            outcome = "correct" if partner.predicted == partner.label else "misclassified"
            lines.append(Line(f"{outcome}: {PurePath(partner.name).name}", partner.entropy, "green"))
        step = largest_step(row, c.flow)
        if step is None:
            return Curves(c.layers, lines, name, c.units)
        return Curves(c.layers, lines, f"{name}: largest drop into {short_names(c.layers)[step]}", c.units, [step])

    def _class_curves(self, c: Comparison) -> Curves:
        lines = [Line(f"{name} ({group.count})", group.mean, GROUP_COLORS[k % len(GROUP_COLORS)])
                 for k, (name, group) in enumerate(c.classes.items())]
        kind = "true class" if c.by_label else "predicted class (no labels)"
        return Curves(c.layers, lines, f"mean entropy per {kind}", c.units)

    def _outcome_curves(self, c: Comparison) -> Curves:
        o = c.outcomes
        if o is None:
            return Curves(c.layers, [], "right vs wrong needs a label for every image", c.units)
        lines = [*band(o.correct, "95% CI, correct"), Line(f"correct ({o.correct.count})", o.correct.mean, "green")]
        if not o.wrong.count:
            return Curves(c.layers, lines, "no misclassified image so far", c.units)
        lines.append(Line(f"wrong ({o.wrong.count})", o.wrong.mean, "red"))
        if o.parting_layer is None:
            return Curves(c.layers, lines, "right vs wrong", c.units)
        k = o.parting_layer
        gap = o.wrong.mean[k] - o.correct.mean[k]
        title = f"they part most at {short_names(c.layers)[k]}: wrong {abs(gap):.2f} {'higher' if gap > 0 else 'lower'}"
        return Curves(c.layers, lines, title, c.units, [k])

    # What the user picks goes to the explorer.

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:
            self.choose(int(event.option.id), None)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        row = self._row(int(event.option.id)) if event.option.id is not None else None
        step = largest_step(row, self.comparison.flow) if row is not None else None
        if row is not None:
            layer = module_of(self.comparison.layers[step]) if step is not None else None
            self.choose(row.index, layer)
            self.dismiss(False)

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tabs.id == "compare-panes":
            self.pane = event.tab.id.removeprefix("pane-")
        else:
            self.view = event.tab.id

    def watch_view(self, view: str) -> None:
        self.query_one("#views", Tabs).active = view
        self._show_curves()

    def watch_pane(self, old: str, pane: str) -> None:
        self.query_one("#compare-panes", Tabs).active = f"pane-{pane}"
        self.remove_class(f"-pane-{old}")
        self.add_class(f"-pane-{pane}")
        if self.has_class("-compact"):  # the keys go to what is shown
            self.set_focus({"images": self.query_one(MistakeList), "curves": self.query_one("#views")}.get(pane))

    def action_view(self, which: str | int) -> None:
        """Show a view by name, or the next (1) or previous (-1) one (and the curves, on a small terminal)."""
        views = list(VIEWS)
        if isinstance(which, int):
            which = views[(views.index(self.view) + which) % len(views)]
        self.view = which
        if self.has_class("-compact"):
            self.pane = "curves"

    def action_pane(self) -> None:
        """The next pane, on a small terminal: mistakes and maps, curves, steps."""
        panes = list(PANES)
        self.pane = panes[(panes.index(self.pane) + 1) % len(panes)]

    def action_close(self) -> None:
        self.dismiss(False)

    def action_find(self) -> None:
        self.dismiss(True)

    async def action_explorer(self, action: str) -> None:
        """One of the explorer's own keys, run there."""
        await self.explorer_action(action)
