"""The control of a superization claim: the same images through copies of the model with shuffled weights.

A drop of entropy is not evidence of aggregation by itself: a network with
random weights drops too, at every stride and pooling, from resolution and
architecture alone. The control is the model-randomisation test of Adebayo et
al. ("Sanity Checks for Saliency Maps", NeurIPS 2018), in the form chosen here
(**choice**, semiotui/docs/METHOD.md §3.3): each weight tensor (two or more dimensions)
is shuffled within each output unit (a filter, a row of a linear layer),
seeded, so every unit keeps its learned scale and sign balance while the
learned pattern is gone. Shuffling alone leaves the network broken: a unit's
output no longer has the mean and spread its batch norm was fitted to (the
batch variance over the stored one fell from 1 to 0.09 in a measured copy), so
each shuffled convolution's and linear layer's output channels are then
matched, on the control images, to the mean and standard deviation the
model's own channels have there, layer after layer in forward order. The copy
works as the model does, unit by unit, with nothing learned in its patterns; a
network of random weights is a draw from its own control, its batch norm
statistics whatever they were.

The control networks analyse a seeded sample of the analysis's images spread
across the classes (`control_rows`), the same images the model's numbers are
then taken on, with the same settings (a "predicted" target is each control's
own prediction).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch
from torch import nn

from .analysis import AnalysisResult, AnalysisSettings, Batch, Notice, _as_batch, analyse_batch
from .device import resolve_device
from .errors import InvalidValue
from .hooks import analysis_mode, forward_hooks
from .model_copy import copy_model
from .streams import run_to_end


NULLS = ("matched", "batchnorm", "shuffled", "wiring")


@dataclass(frozen=True)
class ControlSettings:
    """How many control networks, on how many images, from which seed."""

    draws: int = 8  # semiotui/docs/METHOD.md §3.3: the calibration's false-positive rate and power at 8
    images: int = 64
    seed: int = 0
    # How a shuffled copy is made to work (semiotui/docs/METHOD.md §3.3): "matched" (each unit's output mean and spread
    # matched to the model's), or, for comparison only, "batchnorm" (batch norm statistics re-estimated) and
    # "shuffled" (nothing: the copy as shuffled).
    null: str = "matched"

    def check(self) -> None:
        if self.null not in NULLS:
            raise InvalidValue(f"unknown control null {self.null!r}; choose one of {', '.join(NULLS)}")
        if self.draws < 2:
            raise InvalidValue(f"control draws must be at least 2 (their spread is part of the test), got {self.draws}")
        if self.images < 1:
            raise InvalidValue(f"control images must be at least 1, got {self.images}")

    def sample_size(self, analysed: int) -> int:
        """How many of `analysed` images the control networks run on (`control_rows` picks them)."""
        return min(self.images, analysed)


@dataclass
class ControlResult:
    """Entropies of a sample of an analysis's images through each control network."""

    settings: ControlSettings
    layers: list[str]  # map names, as the analysis's
    rows: list[int]  # positions of these images among the analysis's images (`control_rows`)
    entropy: np.ndarray  # draws × images × layers, bits (NaN: an empty map, unless counted as 0)
    empty: np.ndarray  # draws × images × layers, bool
    shuffled: int  # parameters shuffled in each draw
    kept: int  # parameters left as they are (biases, normalisation)
    seeds: list[int] = field(default_factory=list)
    cancelled: bool = False


@dataclass
class ControlProgress:
    done: int  # control networks analysed
    draws: int


@dataclass
class ControlFinished:
    control: ControlResult | None  # None: no control could be made (the reason came as a Notice)
    reason: str | None = None  # why there is none


ControlEvent = Union[ControlProgress, Notice, ControlFinished]


def shuffle_weights(model: nn.Module, seed: int, *, kernels: bool = False) -> tuple[int, int]:
    """Shuffle, in place, each parameter of two or more dimensions within each slice along its first dimension.

    With `kernels`, a weight of three or more dimensions (a convolution's) keeps each kernel whole: only which
    input channel each kernel of a unit reads is shuffled. Returns (parameters shuffled, parameters kept).
    """
    rng = np.random.default_rng(seed)
    shuffled = kept = 0
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() < 2 or p.shape[1:].numel() < 2 or (kernels and p.dim() > 2 and p.shape[1] < 2):
                kept += p.numel()
                continue
            rows = p.detach().reshape(p.shape[0], p.shape[1] if kernels and p.dim() > 2 else 1, -1).cpu()
            rows = (rows.float() if rows.dtype == torch.bfloat16 else rows).numpy()  # numpy has no bfloat16
            if rows.shape[1] == 1:  # numpy shuffles each row on its own in linear time; sorting keys costs more
                out = rng.permuted(rows[:, 0], axis=1)
            else:
                order = rng.permuted(np.tile(np.arange(rows.shape[1]), (rows.shape[0], 1)), axis=1)
                out = np.take_along_axis(rows, order[:, :, None], axis=1)
            p.copy_(torch.from_numpy(np.ascontiguousarray(out)).view_as(p))
            shuffled += p.numel()
    return shuffled, kept


@torch.no_grad()
def match_moments(copy_: nn.Module, model: nn.Module, images: torch.Tensor) -> int:
    """Give each shuffled unit of `copy_` the output mean and spread the model's unit has on `images`.

    For every convolution and linear layer (the modules whose weights
    `shuffle_weights` reorders), in the order the forward pass reaches them, the
    copy's output channel c becomes `a_c * out_c + b_c` with `a_c`, `b_c` such
    that its mean and standard deviation over `images` (and positions) equal the
    model's; the affine is folded into the weight and bias, so later layers are
    fitted on the corrected outputs of earlier ones, in one pass. A channel the
    model leaves constant stays constant; one the copy leaves constant is only
    shifted. Returns the number of layers matched.
    """
    def linear_units(net: nn.Module) -> dict[str, nn.Module]:
        kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
        return {name: m for name, m in net.named_modules() if isinstance(m, kinds) and m.weight.dim() >= 2}

    def channel_moments(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dims = [d for d in range(out.dim()) if d != 1]
        return out.mean(dim=dims), out.std(dim=dims, correction=0)

    target: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    units = linear_units(model)

    def record(name: str):
        def hook(module: nn.Module, args: object, out: object) -> None:
            if isinstance(out, torch.Tensor) and out.dim() >= 2 and name not in target:
                target[name] = channel_moments(out.detach().double())
        return hook

    with analysis_mode(model), forward_hooks((m, record(n)) for n, m in units.items()):
        model(images)
    fitted: set[str] = set()

    def fit(name: str):
        def hook(module: nn.Module, args: object, out: object) -> object:
            if name in fitted or name not in target or not isinstance(out, torch.Tensor):
                return None
            fitted.add(name)
            want_mean, want_std = target[name]
            if out.shape[1] != len(want_mean) or module.weight.shape[0] != len(want_mean):
                return None  # not one output channel per weight row (a transposed convolution): left as shuffled
            mean, std = channel_moments(out.detach().double())
            scale = torch.where(std > 1e-12 * std.max().clamp(min=1e-30), want_std / std.clamp(min=1e-300),
                                torch.ones_like(std))
            scale = torch.where(want_std == 0, torch.zeros_like(scale), scale)
            shift = want_mean - scale * mean
            module.weight.mul_(scale.to(module.weight.dtype).view(-1, *[1] * (module.weight.dim() - 1)))
            if module.bias is None:
                module.bias = nn.Parameter(shift.to(module.weight.dtype), requires_grad=False)
            else:
                module.bias.mul_(scale.to(module.bias.dtype)).add_(shift.to(module.bias.dtype))
            view = [1, -1] + [1] * (out.dim() - 2)
            return (out.double() * scale.view(view) + shift.view(view)).to(out.dtype)
        return hook

    copied = linear_units(copy_)
    with analysis_mode(copy_), forward_hooks((copied[n], fit(n)) for n in units if n in copied):
        copy_(images)
    return len(fitted)


@torch.no_grad()
def reestimate_batchnorm(copy_: nn.Module, images: torch.Tensor) -> None:
    """Replace every batch norm's running statistics by those of its input on `images` (a null kept for comparison).

    Right for a trained model's copy; wrong for a model whose statistics were never fitted (an untrained one),
    whose copies it normalises where the model does not (semiotui/docs/METHOD.md §3.3).
    """
    norms = [m for m in copy_.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [(m, m.training) for m in copy_.modules()]
    momenta = [m.momentum for m in norms]
    try:
        copy_.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: one batch gives its own statistics
            m.train()
        copy_(images)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, training in modes:
            m.training = training


def control_rows(result: AnalysisResult, count: int, seed: int = 0) -> list[int]:
    """Positions of `count` images of `result`, a seeded sample spread evenly across the classes.

    The classes are the labels where every image has one, else the predicted
    classes: the images are drawn from each class in turn (in a seeded order
    within it), so a class-folder tree sorted by name does not give the control
    one class. Returned in the analysis's order.
    """
    rows = result.images
    count = min(count, len(rows))
    labelled = bool(rows) and all(r.label is not None for r in rows)
    groups: dict[int, list[int]] = {}
    for k, r in enumerate(rows):
        groups.setdefault(r.label if labelled else r.predicted, []).append(k)
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(groups[c])) for c in sorted(groups)]
    picked: list[int] = []
    while len(picked) < count:
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(int(queue.pop(0)))
    return sorted(picked)


def control_analysis(
    model: nn.Module, images: Iterable, result: AnalysisResult, control: ControlSettings = ControlSettings()
) -> ControlResult | None:
    """Run `stream_control` to the end; None when no control can be made."""
    return run_to_end(stream_control(model, images, result, control), ControlFinished).control


def stream_control(
    model: nn.Module,
    images: Iterable,
    result: AnalysisResult,
    control: ControlSettings = ControlSettings(),
    *,
    cancel: threading.Event | None = None,
) -> Iterator[ControlEvent]:
    """Analyse a sample of the images of `result` (`control_rows`) through `control.draws` control networks.

    `images` is where the analysis's images came from: an `engine.data.ImageSource`
    (the sample is read from it again), or the analysis's batches in order
    (tensors, pairs or `Batch`; the sample is picked from them as they pass).
    The model itself is left untouched. Setting `cancel` stops after the current
    batch; the networks finished are kept (`cancelled`), the one cut short is not.
    """
    control.check()
    settings = result.settings
    device = resolve_device(settings.device)
    rows = control_rows(result, control.images, control.seed)
    batches = _sample(images, [result.images[k].index for k in rows], settings.batch_size)
    if not batches:
        yield Notice("no control: the analysis has no images")
        yield ControlFinished(None, "the analysis has no images")
        return
    try:
        twin = copy_model(model)
    except Exception as exc:  # a model that cannot be copied (open files, locks) has no control
        reason = f"the model cannot be copied ({type(exc).__name__}: {_first_line(exc)})"
        yield Notice(f"no control: {reason}")
        yield ControlFinished(None, reason)
        return
    originals = {name: p.detach().clone() for name, p in model.named_parameters()}
    fitting = batches[0].images.to(device)
    layers = list(result.layers)
    entropy, empty, seeds = [], [], []
    shuffled = kept = 0
    for draw in range(control.draws):
        if cancel is not None and cancel.is_set():
            break
        seed = control.seed + draw
        with torch.no_grad():
            for name, p in twin.named_parameters():
                if name in originals:
                    p.copy_(originals[name])
                else:  # a bias `match_moments` added to an earlier draw
                    p.zero_()
        counts = shuffle_weights(twin, seed, kernels=control.null == "wiring")
        if draw == 0:  # later draws also count the biases `match_moments` added as kept
            shuffled, kept = counts
        if control.null in ("matched", "wiring"):
            match_moments(twin, model, fitting)
        elif control.null == "batchnorm":
            reestimate_batchnorm(twin, fitting)
        measured = _through(twin, batches, layers, settings, device, cancel)
        if measured is None:  # cancelled within this network: it is dropped
            break
        entropy.append(measured[0])
        empty.append(measured[1])
        seeds.append(seed)
        yield ControlProgress(draw + 1, control.draws)
    del twin
    if len(entropy) < 2:
        yield ControlFinished(None, f"stopped after {len(entropy)} control network{'s' * (len(entropy) != 1)}, "
                                    "fewer than the two a comparison needs")
        return
    yield ControlFinished(ControlResult(
        settings=control, layers=layers, rows=rows, entropy=np.stack(entropy),
        empty=np.stack(empty), shuffled=shuffled, kept=kept, seeds=seeds, cancelled=len(entropy) < control.draws,
    ))


def _through(twin: nn.Module, batches: list[Batch], layers: list[str], settings: AnalysisSettings, device: torch.device,
             cancel: threading.Event | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Entropies and empty flags (images × layers) of `batches` through a control network; None when `cancel` is
    set before its last batch, so that quitting waits for one batch, not a whole network."""
    entropy, empty = [], []
    for part in batches:
        if cancel is not None and cancel.is_set():
            return None
        out, _ = analyse_batch(twin, part, layers, settings, device, list(range(len(part.images))), ())
        entropy += [r.entropy for r in out]
        empty += [r.empty for r in out]
    return np.stack(entropy), np.stack(empty)


def _sample(images: Iterable, indices: list[int], batch_size: int) -> list[Batch]:
    """The images at source `indices` in batches of `batch_size`: read again from an image source, or picked
    from its batches as they pass (however those were cut, the same images give the same batches)."""
    if hasattr(images, "subset"):
        return [b for b in images.subset(indices).batches(batch_size) if len(b.images)]
    wanted = set(indices)
    picked: list[Batch] = []
    position = 0
    for item in images:
        batch = _as_batch(item)
        positions = batch.indices if batch.indices is not None else range(position, position + len(batch.images))
        keep = [j for j, i in enumerate(positions) if i in wanted]
        position = (max(positions) + 1) if len(positions) else position
        if keep:
            picked.append(Batch(batch.images[keep], None if batch.labels is None else batch.labels[keep],
                                None if batch.names is None else [batch.names[j] for j in keep]))
        if sum(len(b.images) for b in picked) >= len(wanted):
            break
    if not picked:
        return []
    pixels = torch.cat([b.images for b in picked])
    labels = None if any(b.labels is None for b in picked) else torch.cat([b.labels for b in picked])
    names = None if any(b.names is None for b in picked) else [n for b in picked for n in b.names]
    return [Batch(pixels[k:k + batch_size], None if labels is None else labels[k:k + batch_size],
                  None if names is None else names[k:k + batch_size]) for k in range(0, len(pixels), batch_size)]


def _first_line(exc: BaseException) -> str:
    """An exception's message up to its first line: native errors append pages of C++ frames."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
