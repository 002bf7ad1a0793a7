"""Command palette entries: the explorer's (jump to a layer, change method, estimator or target, export, prune,
compare, theme) and the pruning screen's (start, stop, save, export, compare, back)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING

from rich.text import Text
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from semiotui.engine.entropy import ESTIMATORS
from semiotui.engine.saliency import METHODS
from semiotui.themes.theme import THEMES

from .plain import plain
from .saliency import class_text

if TYPE_CHECKING:
    from .explorer import ExplorerScreen
    from .prune_screen import PruneScreen

Command = tuple[str, Callable[[], object], str, bool]  # text, callback, help, offered before typing


class Commands(Provider):
    """A screen's commands (`commands`), offered before typing and found by fuzzy search."""

    @abstractmethod
    def commands(self) -> Iterator[Command]:
        """The screen's commands as they stand now."""

    # Commands and their help name layers and classes: the palette reads a string as markup, Content as it is.

    async def discover(self) -> Hits:
        for text, callback, help, offered in self.commands():
            if offered:
                yield DiscoveryHit(plain(text), callback, text=text, help=Content.from_rich_text(plain(help)))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help, _ in self.commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, highlighted(matcher, text), callback, text=text,
                          help=Content.from_rich_text(plain(help)))


class SemiotuiCommands(Commands):
    """Every command of the explorer; the current choice of each setting is marked."""

    @property
    def explorer(self) -> ExplorerScreen:
        return self.screen  # type: ignore[return-value]

    def commands(self) -> Iterator[Command]:
        explorer = self.explorer
        settings = explorer.controller.settings
        for method in METHODS:
            mark = " (current)" if method == settings.method else ""
            yield f"Method: {method}{mark}", partial(explorer.change_settings, method=method), "saliency method", True
        for estimator in ESTIMATORS:
            mark = " (current)" if estimator == settings.estimator else ""
            help = "entropy estimator"
            yield f"Estimator: {estimator}{mark}", partial(explorer.change_settings, estimator=estimator), help, True
        for target, text in explorer.targets():
            mark = " (current)" if target == settings.target else ""
            discover = not isinstance(target, int)
            help = "class the maps explain"
            yield f"Target: {text}{mark}", partial(explorer.change_settings, target=target), help, discover
        yield "Export report…", explorer.action_export, "write the analysis as a report folder (e)", True
        yield "Prune…", explorer.action_prune, "greedy pruning of a copy of the model (g)", True
        yield "Compare…", explorer.action_compare, "this image against the dataset, classes, right vs wrong (c)", True
        if explorer.largest is not None:
            help = "the layer this image's entropy drops into most (◆ in the tree)"
            yield f"Layer: {explorer.largest} (largest drop)", partial(explorer.show_layer, explorer.largest), help, True
        for name in THEMES:
            mark = " (current)" if name == self.app.theme else ""
            yield f"Theme: {name.removeprefix('semiotui-')}{mark}", partial(self._use_theme, name), "", True
        for info in explorer.workspace.index:
            help = f"{info.type}, output {info.output_shape}" if info.output_shape else info.type
            yield f"Layer: {info.name}", partial(explorer.show_layer, info.name), help, False

    def _use_theme(self, name: str) -> None:
        self.app.theme = name


class PruneCommands(Commands):
    """The pruning screen's actions, the ones its footer shows and the buttons', reachable from any field."""

    def commands(self) -> Iterator[Command]:
        screen: PruneScreen = self.screen  # type: ignore[assignment]
        later = " (once pruning has finished)"
        entries = [
            ("start", "Start pruning", screen.action_start, "with the settings in the form (s)"),
            ("stop", "Stop pruning", screen.action_stop, "after the current step, keeping the best so far (x)"),
            ("save", "Save the pruned model", screen.save, "as the file named in the save bar"),
            ("export", "Export report of the pruned model…", screen.action_export, "analysed afresh (e)"),
            ("compare", "Compare with the original", screen.action_compare, "the two models side by side (c)"),
            ("leave", "Back to the explorer", screen.action_leave, "(esc)"),
        ]
        for action, text, callback, help in entries:
            state = screen.check_action(action, ())
            if state is not False:
                yield text, callback, help if state else help + later, True


def highlighted(matcher: Matcher, text: str) -> Text:
    """`text` with the letters the query matched marked, as `Matcher.highlight` does without reading markup."""
    shown = plain(text)
    _, offsets = matcher.fuzzy_search.match(matcher.query, text)
    for offset in offsets:
        if not text[offset].isspace():
            shown.stylize(matcher.match_style.rich_style, offset, offset + 1)
    return shown


def target_text(target: str | int, names: list[str] | None) -> str:
    """How a target setting reads in menus and the status line."""
    if target == "predicted":
        return "predicted class"
    if target == "label":
        return "true label"
    return class_text(int(target), names)
