"""The layer tree: the model's modules in forward order, with type, shape, parameters and entropy."""

from __future__ import annotations

import re

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Input, Tree
from textual.widgets.tree import TreeNode

from semiotui.engine.layers import LayerIndex, LayerInfo, format_shape
from semiotui.engine.superization import MOSTLY_EMPTY

from .messages import FindLayer, MeasureToggled


def format_count(n: int) -> str:
    """Parameters in a short form: 448, 12.3k, 1.2M."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def clip(text: str, width: int) -> str:
    """`text` cut to `width` cells, with an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def abbreviate(name: str, width: int) -> str:
    """A dotted name in `width` cells: outer parts shortened first (`layer2.0.downsample.0` → `l2.0.d.0`)."""
    parts = name.split(".")
    for i in range(len(parts) - 1):
        if len(".".join(parts)) <= width:
            break
        word = re.fullmatch(r"([^\d]*)(\d*)", parts[i])
        if word and word.group(1):
            parts[i] = word.group(1)[0] + word.group(2)
    short = ".".join(parts)
    return short if len(short) <= width else "…" + short[len(short) - width + 1 :]


def short_names(names: list[str]) -> list[str]:
    """Dotted names without the prefix they all share (`features.conv1` → `conv1`)."""
    if len(names) < 2:
        return [name.rsplit(".", 1)[-1] for name in names]
    parts = [name.split(".") for name in names]
    shared = 0
    while all(len(p) > shared + 1 and p[shared] == parts[0][shared] for p in parts):
        shared += 1
    return [".".join(p[shared:]) for p in parts]


class LayerTree(Tree[LayerInfo]):
    """Every module, nested as in the model; `space` adds or removes a layer from the measured ones."""

    COMPONENT_CLASSES: ClassVar[set[str]] = Tree.COMPONENT_CLASSES | {"layer-tree--largest"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False, id="cursor-down"),
        Binding("k", "cursor_up", "Up", show=False, id="cursor-up"),
        Binding("space", "toggle_measure", "Measure", id="measure"),
    ]

    compact: reactive[bool] = reactive(False)
    """Show only the name and the entropy (narrow panes)."""
    largest: reactive[str | None] = reactive(None)
    """The layer entered by the current image's largest entropy drop, marked `◆`."""

    def __init__(self, index: LayerIndex, measured: list[str], *, id: str | None = None) -> None:
        super().__init__("model", id=id)
        self.show_root = False
        self.guide_depth = 3
        self.index = index
        self.measured = set(measured)
        self.entropy: dict[str, float] = {}
        self.empty: dict[str, float] = {}  # share of empty maps, where some are: mostly empty ones are flagged ∅
        self.branches: set[str] = set()  # measured layers off the main path (no step of their own), flagged ⑂
        self.nodes_by_name: dict[str, TreeNode[LayerInfo]] = {}
        self._name_width = 0
        self._type_width = min(11, max((len(info.type) for info in index), default=0))
        self._shape_width = min(11, max((len(format_shape(info.output_shape)) for info in index), default=0))
        self._columns: tuple[str, ...] = ("type", "shape", "parameters")  # the detail columns that fit

    def on_mount(self) -> None:
        self._name_width = 1 + max((self._indent(info) + len(info.name.rsplit(".", 1)[-1]) for info in self.index), default=0)
        for info in self.index:
            parent_name = info.name.rpartition(".")[0]
            parent = self.nodes_by_name.get(parent_name, self.root)
            node = parent.add(self._label(info), data=info, expand=True, allow_expand=not info.leaf)
            self.nodes_by_name[info.name] = node
        self.root.expand()

    def _indent(self, info: LayerInfo) -> int:
        """Cells before a row's name: guides, the open/close icon, the marker."""
        return self.guide_depth * (info.depth - 1) + (0 if info.leaf else len(self.ICON_NODE_EXPANDED)) + 2

    def _label(self, info: LayerInfo) -> Text:
        """One row: marker, name, entropy (first: it must stay in view), type, output shape, parameters."""
        name = info.name.rsplit(".", 1)[-1]
        value = self.entropy.get(info.name)
        if info.name in self.measured:
            mark, entropy = "● ", "   …" if value is None or value != value else f"{value:5.2f}"
            if value is not None and value != value:  # NaN: every map so far is empty
                entropy = "empty"
        else:
            mark, entropy = ("○ " if info.spatial else "  "), ""
        label = Text(style="bold" if info.name in self.measured else "")
        if info.name == self.largest:
            label.append("◆ ", style=self.get_component_rich_style("layer-tree--largest", partial=True))
        else:
            label.append(mark)
        label.append(name, style="" if info.spatial else "dim")
        flag = "∅" if self.empty.get(info.name, 0.0) > MOSTLY_EMPTY else "⑂" if info.name in self.branches else " "
        if self.compact:
            label.append(f" {entropy}{flag}".rstrip(), style="bold")
            return label
        label.append(" " * (self._name_width - self._indent(info) - len(name)))
        label.append(f"{entropy:>5}", style="bold")
        label.append(f"{flag} ", style="bold")
        cells = {"type": f"{clip(info.type, self._type_width):<{self._type_width}}",
                 "shape": f"{clip(format_shape(info.output_shape), self._shape_width):<{self._shape_width}}",
                 "parameters": f"{format_count(info.parameters):>6}"}
        label.append(Text(" ".join(cells[c] for c in self._columns), style="dim"))
        return label

    def watch_compact(self) -> None:
        self.relabel()

    def on_resize(self) -> None:
        """Keep the detail columns that fit whole, dropping type, then shape, then parameters: a number is never cut."""
        room = self.size.width - 1 - (self._name_width + 7)  # the scroll bar; name, entropy and flag
        widths = {"type": self._type_width + 1, "shape": self._shape_width + 1, "parameters": 6}
        columns = ["type", "shape", "parameters"]
        while columns and sum(widths[c] for c in columns) > room:
            columns.pop(0)
        if tuple(columns) != self._columns:
            self._columns = tuple(columns)
            self.relabel()

    def watch_largest(self, old: str | None, new: str | None) -> None:
        self.relabel([name for name in (old, new) if name in self.nodes_by_name])

    def relabel(self, names: list[str] | None = None) -> None:
        """Redraw the rows of the given layers (all when None)."""
        for name in self.nodes_by_name if names is None else names:
            node = self.nodes_by_name[name]
            node.set_label(self._label(node.data))

    def set_entropy(self, entropy: dict[str, float], empty: dict[str, float] | None = None) -> None:
        """Show these mean entropies and shares of empty maps (by module name); only changed rows are redrawn."""
        empty = empty or {}
        changed = [n for n in self.nodes_by_name
                   if entropy.get(n) != self.entropy.get(n) or empty.get(n) != self.empty.get(n)]
        self.entropy, self.empty = dict(entropy), dict(empty)
        self.relabel(changed)

    def set_branches(self, branches: set[str]) -> None:
        """Mark the measured layers off the main path (`⑂`): their maps are measured, they have no step."""
        if branches != self.branches:
            changed = sorted((branches ^ self.branches) & set(self.nodes_by_name))
            self.branches = set(branches)
            self.relabel(changed)

    def set_measured(self, measured: list[str]) -> None:
        changed = set(measured) ^ self.measured
        self.measured = set(measured)
        self.relabel(sorted(changed))

    def select_layer(self, name: str) -> None:
        """Move the cursor to a layer, opening its parents."""
        node = self.nodes_by_name[name]
        parent = node.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        self.call_after_refresh(self.move_cursor, node)

    def find(self, text: str, after: str | None = None) -> str | None:
        """The first layer whose dotted name contains `text` (case-insensitive), after `after` if given."""
        text = text.lower()
        names = list(self.nodes_by_name)
        start = names.index(after) + 1 if after in self.nodes_by_name else 0
        for name in names[start:] + names[:start]:
            if text in name.lower():
                return name
        return None

    def action_toggle_measure(self) -> None:
        node = self.cursor_node
        if node is None or node.data is None:
            return
        if not node.data.spatial:
            if node.allow_expand:
                node.toggle()
            else:
                self.notify(f"{node.data.name} has no spatial map to measure", severity="warning")
            return
        self.post_message(MeasureToggled(node.data))


class LayerFind(Input):
    """`/` in the layer pane: typing jumps to the first matching layer; `down` to the next; enter closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", show=False, id="back"),
        Binding("down", "next", "Next match", show=False, id="next-match"),
    ]

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if event.value:
            self.post_message(FindLayer(event.value, next=False))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_close()

    def action_next(self) -> None:
        if self.value:
            self.post_message(FindLayer(self.value, next=True))

    def action_close(self) -> None:
        self.value = ""
        self.display = False
        self.screen.query_one(LayerTree).focus()


class LayerPane(Vertical):
    """The tree and its find box."""

    def __init__(self, index: LayerIndex, measured: list[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.index = index
        self.measured = measured

    def compose(self) -> ComposeResult:
        yield LayerTree(self.index, self.measured)
        yield LayerFind(placeholder="find (↓ next, ⏎ done)")  # whole in the narrow pane at 80 columns

    def open_find(self) -> None:
        find = self.query_one(LayerFind)
        find.display = True
        find.focus()

    @on(FindLayer)
    def _jump(self, event: FindLayer) -> None:
        tree = self.query_one(LayerTree)
        current = tree.cursor_node.data.name if tree.cursor_node and tree.cursor_node.data else None
        name = tree.find(event.text, after=current if event.next else None)
        if name is not None:
            tree.select_layer(name)
