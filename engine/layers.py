"""The layer index: a model's modules in forward execution order, and layer selection."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import InvalidValue
from .hooks import analysis_mode, forward_hooks
from .saliency import map_name

# Layers measured when the user selects none: convolutions and pooling with a spatial output.
DEFAULT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.LPPool2d,
    nn.FractionalMaxPool2d,
)


def format_shape(shape: Sequence[int] | None) -> str:
    """An output shape as `64×56×56`; `–` for none."""
    return "×".join(map(str, shape)) if shape else "–"


@dataclass(frozen=True)
class LayerInfo:
    """One module of the model, as seen in a forward pass of one image."""

    name: str  # dotted module name
    type: str  # class name
    depth: int  # 1 for a direct child of the model
    leaf: bool  # has no child modules
    calls: int  # times called in one forward (0: never called)
    output_shape: tuple[int, ...] | None  # of the first call, without the batch dimension
    parameters: int  # including those of child modules
    spatial: bool  # returns (B, C, h, w) with h*w > 1, so it has a saliency map
    default: bool  # part of the default selection
    returns: tuple[int, ...] = ()  # position of each call among all calls, as they return

    @property
    def map_names(self) -> list[str]:
        """Names of this layer's maps: one per call."""
        return [map_name(self.name, k, self.calls) for k in range(1, self.calls + 1)]


class LayerIndex:
    """Every named module, in the order a forward pass first enters it."""

    def __init__(self, layers: Iterable[LayerInfo]) -> None:
        self.layers = list(layers)
        self._by_name = {info.name: info for info in self.layers}

    def __iter__(self) -> Iterator[LayerInfo]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str) -> LayerInfo:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def spatial(self) -> list[LayerInfo]:
        return [info for info in self.layers if info.spatial]

    def default_selection(self) -> list[str]:
        """Convolution and pooling layers with a spatial output, in forward order."""
        return [info.name for info in self.layers if info.default]

    def select(self, patterns: Sequence[str] | None = None) -> list[str]:
        """Layer names for dotted names or globs (`features.*`), in forward order.

        A glob keeps only layers with a spatial map; an exact name must have one.
        No patterns gives the default selection.
        """
        if not patterns:
            chosen = self.default_selection()
            if not chosen:
                raise InvalidValue("the model has no convolution or pooling layer with a spatial output")
            return chosen
        picked: set[str] = set()
        for pattern in patterns:
            if any(c in pattern for c in "*?["):
                hits = {i.name for i in self.layers if i.spatial and fnmatch.fnmatchcase(i.name, pattern)}
                if not hits:
                    raise InvalidValue(f"no layer with a spatial map matches {pattern!r}")
                picked |= hits
            elif pattern not in self._by_name:
                close = difflib.get_close_matches(pattern, list(self._by_name), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise InvalidValue(f"no layer named {pattern!r}{hint}")
            elif not self._by_name[pattern].spatial:
                info = self._by_name[pattern]
                raise InvalidValue(f"layer {pattern!r} ({info.type}, output {info.output_shape}) has no spatial map")
            else:
                picked.add(pattern)
        return [info.name for info in self.layers if info.name in picked]

    def map_names(self, names: Sequence[str]) -> list[str]:
        """Map names (`name`, or `name#k` per call) of the given layers, in the order calls return."""
        calls = [
            (position, map_name(name, k, info.calls))
            for name in names
            for info in [self._by_name[name]]
            for k, position in enumerate(info.returns, start=1)
        ]
        return [m for _, m in sorted(calls)]


def index_layers(model: nn.Module, example: torch.Tensor) -> LayerIndex:
    """Run `example` (one or a few images) through `model` and index its modules."""
    named = [(n, m) for n, m in model.named_modules() if n]
    order: dict[str, int] = {}
    shapes: dict[str, list[object]] = {n: [] for n, _ in named}
    returns: dict[str, list[int]] = {n: [] for n, _ in named}
    returned = 0

    def pre_hook(name: str):
        def hook(module: nn.Module, args: object) -> None:
            order.setdefault(name, len(order))

        return hook

    def post_hook(name: str):
        def hook(module: nn.Module, args: object, output: object) -> None:
            nonlocal returned
            shapes[name].append(tuple(output.shape) if isinstance(output, torch.Tensor) else None)
            returns[name].append(returned)
            returned += 1

        return hook

    hooks = [(module, post_hook(name)) for name, module in named]
    pre_hooks = [(module, pre_hook(name)) for name, module in named]
    with forward_hooks(hooks, pre_hooks), analysis_mode(model), torch.no_grad():
        model(example)

    infos = []
    for name, module in named:
        calls = shapes[name]
        shape = calls[0] if calls else None
        spatial = shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1
        infos.append(
            LayerInfo(
                name=name,
                type=type(module).__name__,
                depth=name.count(".") + 1,
                leaf=next(module.children(), None) is None,
                calls=len(calls),
                output_shape=tuple(shape[1:]) if shape else None,
                parameters=sum(p.numel() for p in module.parameters()),
                spatial=spatial,
                default=spatial and isinstance(module, DEFAULT_TYPES),
                returns=tuple(returns[name]),
            )
        )
    # Modules never called keep their definition order, after those that ran.
    infos.sort(key=lambda i: order.get(i.name, len(order)))
    return LayerIndex(infos)
