"""Semiotic greedy pruning (semiotui/docs/METHOD.md §5): remove the channels that contribute least as signs.

Each step analyses the current model on a calibration set, tries the layers in
increasing order of their superization step (the layer that aggregates least is
the first suspect), removes the fraction of that layer's channels with the
smallest importance with Torch-Pruning's dependency graph (so batch norms,
residual adds, concatenations and consumers follow, and the result is a real
smaller model), fine-tunes briefly, and keeps the move if the accuracy stays
within the tolerance of the original; otherwise it restores the model and
marks the layer saturated. The `l1` criterion runs the same loop with the L1
norm of each filter as the importance, as a baseline.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Protocol, Union

import torch
from torch import nn

from .analysis import AnalysisSettings, Batch, analyse, first_images
from .device import resolve_device
from .errors import InvalidValue
from .hooks import forward_hooks
from .model_copy import copy_model
from .saliency import attribute_layers, module_of, select_output

CRITERIA = ("semiotic", "l1")


class Images(Protocol):
    """Anything that yields labelled batches and lists its labels (-1: none), as `engine.data.ImageSource` does."""

    labels: list[int]

    def batches(self, batch_size: int) -> Iterator[Batch]: ...

    def example(self) -> torch.Tensor:
        """The first readable image as a (1, C, H, W) batch."""


@dataclass(frozen=True)
class PruneSettings:
    criterion: str = "semiotic"
    fraction: float = 0.1  # of a layer's channels removed per move
    tolerance: float = 0.02  # largest accuracy drop from the original allowed
    target_params: float | None = None  # stop at or below this fraction of the original parameters
    target_macs: float | None = None
    max_steps: int | None = None  # accepted moves
    finetune_batches: int = 20
    learning_rate: float = 0.01  # at the start of each fine-tune; decays to zero
    calibration_images: int = 64

    def check(self) -> None:
        if self.criterion not in CRITERIA:
            raise InvalidValue(f"unknown criterion {self.criterion!r}; choose one of {', '.join(CRITERIA)}")
        if not 0 < self.fraction < 1:
            raise InvalidValue(f"`fraction` must be between 0 and 1, got {self.fraction}")
        if not 0 <= self.tolerance <= 1:
            raise InvalidValue(f"`tolerance` must be between 0 and 1, got {self.tolerance}")
        for name in ("target_params", "target_macs"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                raise InvalidValue(f"`{name}` must be between 0 and 1, got {value}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidValue(f"`max_steps` must be at least 1, got {self.max_steps}")
        if self.finetune_batches < 0 or self.calibration_images < 1:
            raise InvalidValue("`finetune_batches` must be 0 or more and the calibration set not empty")


@dataclass
class Measure:
    """A model's size, accuracy and entropy curve."""

    parameters: int
    macs: int
    accuracy: float
    curve: list[float]


@dataclass
class Step:
    """One tried move: accepted, or rolled back and its layer marked saturated.

    The measures (parameters, MACs, accuracy, entropy curve) are of the model the
    move produced, fine-tuned, whether it was kept or not.
    """

    index: int
    layer: str
    channels_removed: int
    channels_left: int
    accepted: bool
    parameters: int
    macs: int
    accuracy: float
    seconds: float
    curve: list[float] = field(default_factory=list)


@dataclass
class PruneLog:
    criterion: str
    layers: list[str]
    original: Measure
    settings: dict
    steps: list[Step] = field(default_factory=list)
    final: Measure | None = None
    stopped_because: str = ""
    measure: str = "accuracy"  # "agreement" (with the original's predictions) where images have no labels
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Trying:
    """Step `step` tries to cut `layer`."""

    layer: str
    step: int

    @property
    def text(self) -> str:
        return f"step {self.step}: trying {self.layer}"


@dataclass
class Working:
    """What the step under way is doing (a fine-tuning batch, a measurement): progress, and a point to stop at."""

    step: int
    layer: str
    what: str

    @property
    def text(self) -> str:
        return f"step {self.step}: {self.layer}, {self.what}"


@dataclass
class StepDone:
    """A tried move, measured: accepted, or rolled back and its layer saturated."""

    step: Step
    log: PruneLog

    @property
    def text(self) -> str:
        """One line: what was cut, what is left, and the verdict."""
        s, original = self.step, self.log.original
        verdict = "accepted" if s.accepted else "rolled back; layer saturated"
        return (f"step {s.index}: {s.layer} -{s.channels_removed} channels ({s.channels_left} left), parameters "
                f"{s.parameters / original.parameters:.1%}, {self.log.measure} {s.accuracy:.1%} ({verdict})")


@dataclass
class PruneFinished:
    model: nn.Module
    log: PruneLog


PruneEvent = Union[Trying, Working, StepDone, PruneFinished]


def greedy_prune(
    model: nn.Module,
    train: Images,
    held_out: Images,
    layers: list[str],
    settings: PruneSettings = PruneSettings(),
    analysis: AnalysisSettings = AnalysisSettings(),
    *,
    cancel: threading.Event | None = None,
) -> Iterator[PruneEvent]:
    """Prune a copy of `model` step by step; the input model is left as it was.

    `layers` are the conv layers measured and candidates for pruning. Images
    without labels (-1) are scored against the original model's predictions.
    Setting `cancel` stops after the current step, keeping the best model so far;
    a consumer that must stop at once (the interface, when it quits) stops
    iterating: between `Working` events no step runs longer than a batch or
    one measurement.
    """
    settings.check()
    device = resolve_device(analysis.device)
    analysis = AnalysisSettings(**{**asdict(analysis), "device": str(device), "upsample": True})
    model = copy_model(model).to(device).eval()
    reference = copy_model(model)  # the original's predictions stand in for missing labels
    example = held_out.example().to(device)
    classifier = _classifier(model, example, analysis.output)
    candidates = [name for name in layers if _prunable(model.get_submodule(name), classifier)]
    if not candidates:
        raise InvalidValue("none of the selected layers can be pruned (convolutions with several output channels)")

    count = settings.calibration_images
    calibration = first_images(train.batches(min(analysis.batch_size, count)), count)
    curve, steps = _curve_and_steps(model, calibration, layers, analysis)
    original = _measure(model, reference, held_out, curve, analysis, example)
    measure = scored_by(held_out)
    log = PruneLog(settings.criterion, list(layers), original, asdict(settings), measure=measure)
    held = len(held_out.labels)
    if held and 1 / held > settings.tolerance:
        log.warnings.append(f"the {measure} is measured on {held} images: it moves in steps of {1 / held:.1%}, "
                            f"more than the tolerance of {settings.tolerance:.1%}; use more images or a larger "
                            "held-out share")
    saturated: set[str] = set()
    current = original
    while True:
        reason = _stop_reason(log, current, settings, saturated, candidates, cancel)
        if reason:
            break
        importance = _importance(model, calibration, candidates, settings.criterion, analysis)
        order = sorted((c for c in candidates if c not in saturated), key=lambda c: _suspicion(steps, layers, c))
        accepted = False
        for name in order:
            number = len(log.steps) + 1
            yield Trying(name, number)
            start = time.perf_counter()
            trial = copy_model(model)
            removed, left = _remove_channels(trial, name, importance[name], settings.fraction, classifier, example)
            if removed == 0:
                saturated.add(name)
                continue
            for done in _finetune(trial, reference, train, settings, analysis):
                yield Working(number, name, f"fine-tuning {done}/{settings.finetune_batches}")
            yield Working(number, name, "measuring its entropy curve")
            trial_curve, trial_steps = _curve_and_steps(trial, calibration, layers, analysis)
            yield Working(number, name, "measuring its accuracy")
            measured = _measure(trial, reference, held_out, trial_curve, analysis, example)
            ok = original.accuracy - measured.accuracy <= settings.tolerance + 1e-12
            step = Step(number, name, removed, left, ok, measured.parameters, measured.macs,
                        measured.accuracy, time.perf_counter() - start, trial_curve)
            log.steps.append(step)
            yield StepDone(step, log)
            if ok:
                model, current, steps, accepted = trial, measured, trial_steps, True
                break
            saturated.add(name)
            if cancel is not None and cancel.is_set():
                break
        if not accepted and not (cancel is not None and cancel.is_set()):
            saturated.update(order)
    log.stopped_because = reason
    log.final = current
    yield PruneFinished(model.eval(), log)


def _stop_reason(log: PruneLog, current: Measure, settings: PruneSettings, saturated: set[str],
                 candidates: list[str], cancel: threading.Event | None) -> str:
    if settings.target_params is not None and current.parameters <= settings.target_params * log.original.parameters:
        return "target parameters reached"
    if settings.target_macs is not None and current.macs <= settings.target_macs * log.original.macs:
        return "target MACs reached"
    if settings.max_steps is not None and sum(s.accepted for s in log.steps) >= settings.max_steps:
        return "maximum number of steps reached"
    if cancel is not None and cancel.is_set():
        return "stopped by the user"
    if all(c in saturated for c in candidates):
        return "every layer is saturated"
    return ""


def _suspicion(steps: dict[str, float], layers: list[str], name: str) -> tuple[float, int]:
    """Sort key: smallest superization step first; the first layer (no step) last (choice)."""
    delta = steps.get(name, math.nan)
    return (math.inf if not math.isfinite(delta) else delta, layers.index(name))


def _curve_and_steps(model: nn.Module, calibration: list[Batch], layers: list[str],
                     analysis: AnalysisSettings) -> tuple[list[float], dict[str, float]]:
    """Mean entropy per map and the mean drop into each layer (its first call's map)."""
    result = analyse(model, calibration, layers, analysis)
    sup = result.superization()
    steps = {}
    for j, map_name in enumerate(result.layers):
        steps.setdefault(module_of(map_name), float(sup.delta[j]))
    return [float(v) for v in sup.mean], steps


def _importance(model: nn.Module, calibration: list[Batch], layers: list[str], criterion: str,
                analysis: AnalysisSettings) -> dict[str, torch.Tensor]:
    """Per output channel of each layer: r_k (semiotic) or the filter's L1 norm."""
    if criterion == "l1":
        return {name: model.get_submodule(name).weight.detach().abs().flatten(1).sum(1).cpu() for name in layers}
    device = next(model.parameters()).device
    total: dict[str, torch.Tensor] = {}
    count = 0
    target = None if analysis.target == "predicted" else analysis.target

    def share(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        # r_bk = |alpha_bk| * mean_ij |A_bkij|: the channel's weight in the gradcam sum
        return (g.mean(dim=(2, 3)).abs() * a.abs().mean(dim=(2, 3))).sum(dim=0)

    for batch in calibration:
        labels = batch.labels.to(device) if target == "label" else target
        sums = attribute_layers(model, batch.images.to(device), layers, share, target=labels,
                                output=analysis.output).maps
        for map_name, s in sums.items():
            name = module_of(map_name)
            total[name] = total.get(name, 0) + s.double().cpu()
        count += len(batch.images)
    return {name: t / count for name, t in total.items()}


def _remove_channels(model: nn.Module, name: str, importance: torch.Tensor, fraction: float,
                     classifier: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """Remove the least important `fraction` of `name`'s output channels, with every coupled layer."""
    import torch_pruning as tp  # imported on first use: with timm installed it takes seconds

    conv = model.get_submodule(name)
    channels = conv.out_channels
    count = min(max(1, int(channels * fraction)), channels - 1)
    if count < 1:
        return 0, channels
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, ignored_layers=[classifier],
                                                  verbose=False)
    idxs = torch.argsort(importance.float(), stable=True)[:count].tolist()
    group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=idxs)
    if not graph.check_pruning_group(group):
        return 0, channels
    group.prune()
    return count, conv.out_channels


def scored_by(images: Images) -> str:
    """What the held-out score is: "accuracy" where every image has a label, else "agreement" with the original."""
    return "accuracy" if all(label >= 0 for label in images.labels) else "agreement"


def _finetune(model: nn.Module, reference: nn.Module, train: Images, settings: PruneSettings,
              analysis: AnalysisSettings) -> Iterator[int]:
    """A few batches of SGD on the labels (the original's predictions where there are none) (choice).

    Yields the number of batches done after each one.

    The learning rate decays to zero over the batches (cosine), so each move is
    measured in a settled state: at a constant rate the accuracy swung by
    several points from one move to the next, sound moves were rolled back, and
    the L1 baseline saturated every layer at 64% of the demo's parameters.
    """
    if settings.finetune_batches == 0:
        return
    device = next(model.parameters()).device
    optimiser = torch.optim.SGD(model.parameters(), lr=settings.learning_rate, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.finetune_batches)
    model.train()
    try:
        batches = itertools.islice(_cycle(train, analysis.batch_size), settings.finetune_batches)
        for done, batch in enumerate(batches, start=1):
            x = batch.images.to(device)
            with torch.no_grad():
                y = _labels(batch, select_output(reference(x), analysis.output).argmax(1))
            optimiser.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(select_output(model(x), analysis.output), y)
            loss.backward()
            optimiser.step()
            schedule.step()
            yield done
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)


def _cycle(images: Images, batch_size: int) -> Iterator[Batch]:
    """The images' batches over and over, leaving out batches whose files were all unreadable."""
    while True:
        found = False
        for batch in images.batches(batch_size):
            if len(batch.images):
                found = True
                yield batch
        if not found:
            raise InvalidValue("no readable image to fine-tune on: every training file was skipped")


def _measure(model: nn.Module, reference: nn.Module, held_out: Images, curve: list[float],
             analysis: AnalysisSettings, example: torch.Tensor) -> Measure:
    """Parameters, MACs and held-out accuracy, with the model's entropy curve as measured."""
    import torch_pruning as tp  # imported on first use: with timm installed it takes seconds

    macs, params = tp.utils.count_ops_and_params(model, example)
    right = seen = 0
    with torch.no_grad():
        for batch in held_out.batches(analysis.batch_size):
            if not len(batch.images):  # its files were all unreadable
                continue
            x = batch.images.to(example.device)
            predicted = select_output(model(x), analysis.output).argmax(1)
            original = select_output(reference(x), analysis.output).argmax(1)
            right += int((predicted == _labels(batch, original)).sum())
            seen += len(x)
    return Measure(int(params), int(macs), right / max(seen, 1), curve)


def _labels(batch: Batch, predicted: torch.Tensor) -> torch.Tensor:
    """The batch's labels, with the original model's prediction where a label is missing (-1)."""
    if batch.labels is None:
        return predicted
    labels = batch.labels.to(predicted.device)
    return torch.where(labels >= 0, labels, predicted)


def _classifier(model: nn.Module, example: torch.Tensor, output: object) -> nn.Module:
    """The last module with parameters to run: the head, whose outputs (the classes) stay."""
    order: list[nn.Module] = []
    leaves = [m for m in model.modules() if next(m.children(), None) is None and any(True for _ in m.parameters())]
    with forward_hooks((m, lambda m, i, o: order.append(m)) for m in leaves), torch.no_grad():
        select_output(model(example), output)
    if not order:
        raise InvalidValue("the model has no layer with parameters to prune")
    return order[-1]


def _prunable(module: nn.Module, classifier: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module is not classifier and module.groups == 1
            and module.out_channels > 1)
