"""The control of a superization claim: the same images through copies of the model with shuffled weights.

A drop of entropy is not evidence of aggregation by itself: a network with
random weights drops too, at every stride and pooling, from resolution and
architecture alone. The control is the model-randomisation test of Adebayo et
al. ("Sanity Checks for Saliency Maps", NeurIPS 2018), in the form chosen here
(**choice**): each weight tensor (two or more dimensions) is shuffled within
each output unit (a filter, a row of a linear layer), seeded, so every unit
keeps its learned scale and sign balance, and the batch norms and biases
matched to them stay valid, while the learned pattern is gone. A network of
random weights is then exactly a draw from its own control. Re-running
`reset_parameters` instead uses PyTorch's default initialisation, not the
one the model came from, and changes every activation's scale: measured on a
random torchvision resnet18, its controls' mean drops varied about ten times
more between seeds, and a single paired comparison called steps significant.

Several draws are analysed on the first images of the analysis, with the
same settings (a "predicted" target is each control's own prediction).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch
from torch import nn

from .analysis import AnalysisResult, Notice, analyse_batch, first_images, last_event
from .device import resolve_device
from .errors import InvalidValue


@dataclass(frozen=True)
class ControlSettings:
    """How many control networks, on how many images, from which seed."""

    draws: int = 8
    images: int = 64
    seed: int = 0

    def check(self) -> None:
        if self.draws < 2:
            raise InvalidValue(f"control draws must be at least 2 (their spread is part of the test), got {self.draws}")
        if self.images < 1:
            raise InvalidValue(f"control images must be at least 1, got {self.images}")


@dataclass
class ControlResult:
    """Entropies of the first images of an analysis through each control network."""

    settings: ControlSettings
    layers: list[str]  # map names, as the analysis's
    rows: list[int]  # positions of these images among the analysis's images
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


ControlEvent = Union[ControlProgress, Notice, ControlFinished]


def shuffle_weights(model: nn.Module, seed: int) -> tuple[int, int]:
    """Shuffle, in place, each parameter of two or more dimensions within each slice along its first dimension.

    Returns (parameters shuffled, parameters kept).
    """
    rng = np.random.default_rng(seed)
    shuffled = kept = 0
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() < 2 or p.shape[1:].numel() < 2:
                kept += p.numel()
                continue
            rows = p.detach().reshape(p.shape[0], -1).cpu()
            rows = (rows.float() if rows.dtype == torch.bfloat16 else rows).numpy()  # numpy has no bfloat16
            # numpy shuffles each row on its own in linear time; sorting random keys costs several times more
            p.copy_(torch.from_numpy(rng.permuted(rows, axis=1)).view_as(p))
            shuffled += p.numel()
    return shuffled, kept


def control_analysis(
    model: nn.Module, batches: Iterable, result: AnalysisResult, control: ControlSettings = ControlSettings()
) -> ControlResult | None:
    """Run `stream_control` to the end; None when no control can be made."""
    return last_event(stream_control(model, batches, result, control), ControlFinished).control


def stream_control(
    model: nn.Module,
    batches: Iterable,
    result: AnalysisResult,
    control: ControlSettings = ControlSettings(),
    *,
    cancel: threading.Event | None = None,
) -> Iterator[ControlEvent]:
    """Analyse the first images of `result` through `control.draws` shuffled copies of `model`.

    `batches` yields those images from the first, in the analysis's order (more
    are ignored). The model itself is left untouched. Setting `cancel` stops
    after the current network; what was finished is kept (`cancelled`).
    """
    control.check()
    settings = result.settings
    device = resolve_device(settings.device)
    images = first_images(batches, min(control.images, len(result.images)))
    if not images:
        yield Notice("no control: the analysis has no images")
        yield ControlFinished(None)
        return
    try:
        twin = copy.deepcopy(model)
    except Exception as exc:  # a model that cannot be copied (open files, locks) has no control
        yield Notice(f"no control: the model cannot be copied ({type(exc).__name__}: {exc})")
        yield ControlFinished(None)
        return
    originals = [p.detach().clone() for p in model.parameters()]
    layers = list(result.layers)
    entropy, empty, seeds = [], [], []
    shuffled = kept = 0
    for draw in range(control.draws):
        if cancel is not None and cancel.is_set():
            break
        seed = control.seed + draw
        with torch.no_grad():
            for p, original in zip(twin.parameters(), originals):
                p.copy_(original)
        shuffled, kept = shuffle_weights(twin, seed)
        h, e = [], []
        for part in images:
            rows, _ = analyse_batch(twin, part, layers, settings, device, list(range(len(part.images))), ())
            h += [r.entropy for r in rows]
            e += [r.empty for r in rows]
        entropy.append(np.stack(h))
        empty.append(np.stack(e))
        seeds.append(seed)
        yield ControlProgress(draw + 1, control.draws)
    del twin
    if len(entropy) < 2:
        yield ControlFinished(None)
        return
    count = sum(len(part.images) for part in images)
    yield ControlFinished(ControlResult(
        settings=control, layers=layers, rows=list(range(count)), entropy=np.stack(entropy),
        empty=np.stack(empty), shuffled=shuffled, kept=kept, seeds=seeds, cancelled=len(entropy) < control.draws,
    ))
