"""Saliency maps of many layers from one forward and one backward pass (semiotui/docs/METHOD.md §1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from .flow import Flow, trace_inputs
from .errors import InvalidValue
from .hooks import ActivationCapture, analysis_mode

Target = Union[None, int, Sequence[int], torch.Tensor]
OutputSelector = Union[None, int, str]
# What a model's class output holds; gradients are always of a log-scale score.
SCORES: tuple[str, ...] = ("logits", "probabilities", "log-probabilities")


@dataclass
class SaliencyResult:
    """Maps of one pass, with the scores and the class each map explains."""

    maps: dict[str, torch.Tensor]  # map name -> (B, h, w), forward order
    logits: torch.Tensor  # (B, classes) explained scores, detached: logits, or log-probabilities
    targets: torch.Tensor  # (B,) long
    probabilities: torch.Tensor | None = None  # (B, classes): softmax of logits, or the model's own
    scores: str = "logits"  # what the model's output held (SCORES)
    unlinked: list[str] | None = None  # maps whose layer the explained score does not depend on
    flow: Flow | None = None  # with `trace`: which measured layer feeds which


def _gradcam(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # (A batched matrix product is 1.8x faster here, but its rounding moves a few pixels across
    # a grey level: entropies then differ from Captum's by 1e-5 bits instead of 1e-15.)
    alpha = g.mean(dim=(2, 3), keepdim=True)
    return torch.relu((alpha * a).sum(dim=1))


@dataclass(frozen=True)
class SaliencyMethod:
    """How a layer's map (B, h, w) is made from its activation `a` (B, C, h, w) and its gradient `g`."""

    combine: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    gradients: bool = True  # False: `g` is None, and no backward pass is run


# Every saliency method, named once (semiotui/docs/METHOD.md §1).
SALIENCY_METHODS: dict[str, SaliencyMethod] = {
    "gradcam": SaliencyMethod(_gradcam),
    "layercam": SaliencyMethod(lambda a, g: (torch.relu(g) * a).sum(dim=1)),
    "gradxact": SaliencyMethod(lambda a, g: (g * a).sum(dim=1).abs()),
    "activation": SaliencyMethod(lambda a, g: a.abs().mean(dim=1), gradients=False),
}
METHODS: tuple[str, ...] = tuple(SALIENCY_METHODS)  # their names, for choices and checks


def layer_saliency(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str | nn.Module] | str | nn.Module,
    *,
    target: Target = None,
    method: str = "gradcam",  # one of METHODS
    upsample: bool = False,
    output: OutputSelector = None,
) -> dict[str, torch.Tensor]:
    """Un-normalised saliency maps `{map_name: (B, h, w)}` of every layer in `layers`.

    A module called several times in one forward gives `name#1`, `name#2`, ...
    `target` is the class explained: None (predicted), an int, or one per image.
    """
    return compute_saliency(
        model, inputs, layers, target=target, method=method, upsample=upsample, output=output
    ).maps


def compute_saliency(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str | nn.Module] | str | nn.Module,
    *,
    target: Target = None,
    method: str = "gradcam",
    upsample: bool = False,
    output: OutputSelector = None,
    trace: bool = False,
) -> SaliencyResult:
    """`layer_saliency`, also returning the scores, the explained classes and, with `trace`, the flow."""
    if method not in SALIENCY_METHODS:
        raise InvalidValue(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    chosen = SALIENCY_METHODS[method]
    result = attribute_layers(
        model, inputs, layers, chosen.combine, target=target, output=output, gradients=chosen.gradients, trace=trace,
    )
    if upsample:
        result.maps = {name: upsample_map(m, inputs.shape[-2:]) for name, m in result.maps.items()}
    return result


def attribute_layers(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[str | nn.Module] | str | nn.Module,
    reduce: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
    *,
    target: Target = None,
    output: OutputSelector = None,
    gradients: bool = True,
    trace: bool = False,
) -> SaliencyResult:
    """`reduce(activation, gradient)` for every call of every layer, from one forward and one backward.

    The gradient is of the target classes' scores with respect to the activation
    (None when `gradients` is False); parameters get no gradient. An output that
    is already a probability distribution is explained by its logarithm. With
    `trace`, the result says which measured layer feeds which (`flow`).
    """
    if inputs.dim() != 4:
        raise InvalidValue(f"inputs must have shape (B, C, H, W), got {tuple(inputs.shape)}")
    requested = _resolve_layers(model, layers)
    modules = list(dict.fromkeys(name for name, _ in requested))
    autograd = gradients or trace
    with analysis_mode(model), ActivationCapture(model, modules) as capture:
        x = inputs.detach().requires_grad_(autograd)
        with torch.set_grad_enabled(autograd):
            out = select_output(model(x), output)
            kind = score_kind(out)
            logits = torch.log(out.clamp_min(torch.finfo(out.dtype).tiny)) if kind == "probabilities" else out
        targets = resolve_targets(target, logits)
        acts = _spatial_activations(capture, requested)
        flow = _flow(capture, list(acts)) if trace else None
        unlinked: list[str] = []
        if gradients:
            grads = _gradients(logits.gather(1, targets[:, None]).sum(), list(acts.values()))
            unlinked = [name for name, g in zip(acts, grads) if g is None]
            grads = [torch.zeros_like(a) if g is None else g for a, g in zip(acts.values(), grads)]
        else:
            grads = [None] * len(acts)
        maps = {
            name: reduce(a.detach(), None if g is None else g.detach())
            for (name, a), g in zip(acts.items(), grads)
        }
    return SaliencyResult(maps=maps, logits=logits.detach(), targets=targets,
                          probabilities=probabilities_of(out.detach(), kind), scores=kind,
                          unlinked=unlinked, flow=flow)


def score_kind(scores: torch.Tensor) -> str:
    """'probabilities' (non-negative rows summing to 1), 'log-probabilities' (their logarithms) or 'logits'."""
    s = scores.detach().double()
    ones = torch.ones(len(s), dtype=s.dtype, device=s.device)
    if bool((s >= 0).all()) and torch.allclose(s.sum(dim=1), ones, rtol=0, atol=1e-4):
        return "probabilities"
    if bool((s <= 0).all()) and torch.allclose(s.exp().sum(dim=1), ones, rtol=0, atol=1e-4):
        return "log-probabilities"
    return "logits"


def probabilities_of(scores: torch.Tensor, kind: str) -> torch.Tensor:
    """Class probabilities as the model gives them: softmax of logits, or its own distribution."""
    if kind == "probabilities":
        return scores.float()
    if kind == "log-probabilities":
        return scores.float().exp()
    return torch.softmax(scores.float(), dim=1)


def upsample_map(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear (align_corners=False) resize of `(B, h, w)` maps to `size`."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def select_output(out: object, output: OutputSelector = None) -> torch.Tensor:
    """The `(B, classes)` score tensor among a model's outputs."""
    if isinstance(out, torch.Tensor):
        scores = out
    elif isinstance(out, dict):
        key = output if output is not None else ("logits" if "logits" in out else None)
        if key not in out:
            raise InvalidValue(f"the model returns a dict: {_shapes(out.items())}; choose one with `output` KEY")
        scores = out[key]
    elif isinstance(out, (tuple, list)):
        if output is None:
            raise InvalidValue(f"the model returns {len(out)} outputs: {_shapes(enumerate(out))}; "
                               "choose one with `output` N")
        if not isinstance(output, int) or not -len(out) <= output < len(out):
            raise InvalidValue(f"`output` {output} is out of range: the model returns {len(out)} outputs "
                               f"({_shapes(enumerate(out))})")
        scores = out[output]
    else:
        raise InvalidValue(f"the model returns {type(out).__name__}, not a tensor of class scores")
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.shape[1] < 2:
        raise InvalidValue(f"the model's output is {_shapes([('', scores)]).strip()}; expected class scores "
                           "(batch, classes) with at least 2 classes")
    return scores


def _shapes(items) -> str:
    """`key (shape)` of each output, for messages that ask the user to choose."""
    def shape(value: object) -> str:
        return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__

    return ", ".join(f"{key} {shape(value)}" for key, value in items)


def resolve_targets(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """The class explained for each image: predicted, one for all, or one per image."""
    batch, classes = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    t = torch.as_tensor(target, device=logits.device).long().flatten()
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise InvalidValue(f"got {t.numel()} targets for {batch} images")
    if bool(((t < 0) | (t >= classes)).any()):
        raise InvalidValue(f"target class out of range: the model has {classes} classes")
    return t.clone()


def _resolve_layers(
    model: nn.Module, layers: Sequence[str | nn.Module] | str | nn.Module
) -> list[tuple[str, int | None]]:
    """(module name, call number or None for every call) for each requested layer."""
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    names_of = {id(m): n for n, m in model.named_modules() if n}
    known = set(names_of.values())
    out: list[tuple[str, int | None]] = []
    for layer in layers:
        if isinstance(layer, nn.Module):
            if id(layer) not in names_of:
                raise InvalidValue(f"{type(layer).__name__} module is not part of the model")
            out.append((names_of[id(layer)], None))
            continue
        name, call = split_map_name(layer)
        if name not in known:
            raise InvalidValue(f"no layer named {name!r} in the model")
        out.append((name, call))
    if not out:
        raise InvalidValue("no layers selected")
    return out


def _spatial_activations(
    capture: ActivationCapture, requested: list[tuple[str, int | None]]
) -> dict[str, torch.Tensor]:
    """Map names to the captured 4-D activations, in the order the calls returned."""
    wanted: set[tuple[str, int]] = set()
    for name, call in requested:
        calls = len(capture.outputs[name])
        if not calls:
            raise InvalidValue(f"layer {name!r} was not called in the forward pass")
        if call is not None and call > calls:
            raise InvalidValue(f"layer {name!r} was called {calls} times, not {call}")
        wanted |= {(name, k) for k in (range(1, calls + 1) if call is None else [call])}
    acts: dict[str, torch.Tensor] = {}
    for name, k in capture.order:
        if (name, k) not in wanted:
            continue
        a = capture.outputs[name][k - 1]
        if not isinstance(a, torch.Tensor) or a.dim() != 4:
            what = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise InvalidValue(f"layer {name!r} returns {what}, which has no spatial map")
        acts[map_name(name, k, len(capture.outputs[name]))] = a
    return acts


def _gradients(score: torch.Tensor, acts: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """d score / d act for each act; None where the score does not depend on it (detached, no_grad)."""
    linked = [i for i, a in enumerate(acts) if a.requires_grad]
    grads: list[torch.Tensor | None] = [None] * len(acts)
    if linked and score.requires_grad:
        found = torch.autograd.grad(score, [acts[i] for i in linked], allow_unused=True)
        for i, g in zip(linked, found):
            grads[i] = g
    return grads


def _flow(capture: ActivationCapture, names: list[str]) -> Flow:
    """Which of the measured maps feeds which, from the autograd graph of this pass."""
    wanted = set(names)
    calls = [(name, k) for name, k in capture.order
             if map_name(name, k, len(capture.outputs[name])) in wanted]
    returned = [capture.outputs[name][k - 1] for name, k in calls]
    passed_on = [capture.passed_on[name][k - 1] for name, k in calls]
    if not all(isinstance(t, torch.Tensor) and t.grad_fn is not None for t in returned):
        return Flow.chain(names)  # some output carries no history (no_grad): keep the forward order
    return Flow.from_inputs(names, trace_inputs(returned, passed_on))


def map_name(module_name: str, call: int, calls: int) -> str:
    """`name` for a module called once, `name#k` for the k-th of several calls."""
    return module_name if calls == 1 else f"{module_name}#{call}"


def split_map_name(name: str) -> tuple[str, int | None]:
    """The module and the call number of a map name (`name#k`); None for `name` alone."""
    module, _, call = name.partition("#")
    if call and not (call.isdigit() and int(call) >= 1):
        raise InvalidValue(f"bad call number in layer {name!r}; expected name#1, name#2, ...")
    return module, int(call) if call else None


def module_of(name: str) -> str:
    """The module a map name (`name` or `name#k`) is a map of."""
    return split_map_name(name)[0]
