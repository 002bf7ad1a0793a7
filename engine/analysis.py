"""Streaming analysis of many images: maps, entropy and statistics, batch by batch.

`stream_analysis` yields events (`BatchDone`, `Notice`, then `Finished`), so a
caller (the interface's worker, the report command) can show progress and stop
it; memory does not grow with the number of images beyond one row of scalars
per image and the thumbnails asked for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .device import OUT_OF_MEMORY, resolve_device
from .entropy import ESTIMATORS, check_levels, entropy_range, measure_maps
from .errors import BatchFailed, InvalidValue, OutOfMemory, SemiotuiError, one_line
from .flow import Flow
from .saliency import METHODS, OutputSelector, SaliencyResult, compute_saliency, upsample_map
from .stats import RunningStats
from .streams import run_to_end
from .superization import Superization, superization

if TYPE_CHECKING:
    from .control import ControlResult

TargetSetting = Union[str, int]  # "predicted", "label", or a class index


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything that changes the numbers of an analysis."""

    method: str = "gradcam"
    estimator: str = "arrangement"  # the paper's aura entropy less its pixels' in random orders (semiotui/docs/METHOD.md §2.1)
    levels: int = 256
    upsample: bool = True  # measure at the input resolution (semiotui/docs/METHOD.md §1); False: native
    normalized: bool = False
    target: TargetSetting = "predicted"
    batch_size: int = 32
    device: str = "auto"
    output: OutputSelector = None
    thumbnail: int = 48  # longest side of kept maps, in pixels
    count_empty: bool = False  # empty maps count as entropy 0 (the literal reading) instead of being left out

    @property
    def empty_value(self) -> float:
        """The entropy an empty map is given: 0 where that is what it means, else NaN (left out).

        An empty map has no arrangement, so the arrangement estimator gives it
        exactly 0 bits, its value for any map without structure; for the plain
        estimators 0 would read as a perfectly ordered map, so it is left out
        unless `count_empty` asks for the literal reading.
        """
        return 0.0 if self.count_empty or self.estimator == "arrangement" else float("nan")

    @property
    def entropy_range(self) -> tuple[float, float]:
        """The values an entropy measured with these settings can take (curves' bands are cut to it)."""
        return entropy_range(levels=self.levels, normalized=self.normalized, estimator=self.estimator)

    def check(self) -> None:
        """Raise `InvalidValue` for a setting outside its range."""
        if self.method not in METHODS:
            raise InvalidValue(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.estimator not in ESTIMATORS:
            raise InvalidValue(f"unknown estimator {self.estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        check_levels(self.levels)
        if self.batch_size < 1:
            raise InvalidValue(f"batch size must be at least 1, got {self.batch_size}")
        if not (isinstance(self.target, int) or self.target in ("predicted", "label")):
            raise InvalidValue(f"`target` must be 'predicted', 'label' or a class index, got {self.target!r}")


@dataclass
class Batch:
    """Images with optional labels (-1: unknown), names, and their positions in the source.

    `skipped` names the files of this stretch of the source that were found not to
    be readable images: (position, name, reason).
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    names: list[str] | None = None
    indices: list[int] | None = None  # None: the images follow the previous batch's
    skipped: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass
class ImageResult:
    index: int
    name: str
    label: int | None
    predicted: int
    confidence: float  # probability of the predicted class (softmax of logits, or the model's own)
    target: int  # class the maps explain
    entropy: np.ndarray  # (layers,) bits; NaN for an empty map unless `count_empty`
    maps: dict[str, np.ndarray] | None = None  # thumbnails, kept for chosen images only
    empty: np.ndarray | None = None  # (layers,) bool: the map is constant (no sign in it)
    top: tuple[int, ...] = ()  # the five most probable classes, most probable first


@dataclass
class AnalysisResult:
    """What an analysis finished; partial (`cancelled`) results stay valid."""

    layers: list[str]  # map names in forward order
    settings: AnalysisSettings
    device: str
    images: list[ImageResult] = field(default_factory=list)
    stats: RunningStats = field(default_factory=RunningStats)
    cancelled: bool = False
    seconds: float = 0.0
    flow: Flow | None = None  # which layer feeds which; None: the forward order
    scores: str = "logits"  # what the model's class output held (saliency.SCORES)
    classes: int = 0  # the model's number of classes
    control: ControlResult | None = None  # the same images through shuffled copies of the model
    no_control: str | None = None  # why the control asked for could not be made
    total: int | None = None  # images the run covers; more than `images` while it still runs
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason) of files found unreadable
    failed: str | None = None  # the error the run stopped on, naming its batch and images (`BatchFailed`)

    @property
    def partial(self) -> str | None:
        """Why the result covers only part of the images ("cancelled", "failed", "still running"), or None."""
        if self.cancelled:
            return "cancelled"
        if self.failed is not None:
            return "failed"
        if self.total is not None and len(self.images) < self.total:
            return "still running"
        return None

    @property
    def entropy(self) -> np.ndarray:
        """Per-image entropy, images × layers (NaN: an empty map, left out)."""
        if not self.images:
            return np.zeros((0, len(self.layers)))
        return np.stack([r.entropy for r in self.images])

    @property
    def empty(self) -> np.ndarray:
        """Per-image empty maps, images × layers (bool)."""
        if not self.images:
            return np.zeros((0, len(self.layers)), dtype=bool)
        return np.stack([r.empty if r.empty is not None else np.isnan(r.entropy) for r in self.images])

    def superization(self) -> Superization:
        """Curve, steps and verdicts; superization needs the control (`engine.control`)."""
        control = self.control
        return superization(self.entropy, self.layers, empty=self.empty, within=self.settings.entropy_range,
                            parents=None if self.flow is None else self.flow.parents,
                            control=None if control is None else control.entropy,
                            control_rows=None if control is None else control.rows,
                            control_empty=None if control is None else control.empty)


@dataclass
class BatchDone:
    images: list[ImageResult]
    done: int
    total: int | None
    rate: float  # images per second so far
    flow: Flow | None = None  # which measured layer feeds which (the same for every batch of a run)
    classes: int = 0  # the model's number of classes, and what its output holds (the same for every batch)
    scores: str = "logits"


@dataclass
class Notice:
    message: str


@dataclass
class Finished:
    result: AnalysisResult


Event = Union[BatchDone, Notice, Finished]


def analyse(
    model: nn.Module,
    batches: Iterable,
    layers: list[str],
    settings: AnalysisSettings = AnalysisSettings(),
    **options,
) -> AnalysisResult:
    """Run `stream_analysis` to the end and return its result."""
    return run_to_end(stream_analysis(model, batches, layers, settings, **options), Finished).result


def first_images(batches: Iterable, count: int) -> list[Batch]:
    """The first `count` images of `batches` (tensors, pairs or `Batch`), kept as a list of batches."""
    out, have = [], 0
    for item in batches:
        if have >= count:
            break
        batch = _as_batch(item)
        take = min(len(batch.images), count - have)
        out.append(Batch(batch.images[:take], None if batch.labels is None else batch.labels[:take],
                         None if batch.names is None else batch.names[:take]))
        have += take
    return out


def stream_analysis(
    model: nn.Module,
    batches: Iterable,
    layers: list[str],
    settings: AnalysisSettings = AnalysisSettings(),
    *,
    keep_maps: int | Collection[int] = 0,
    total: int | None = None,
    cancel: threading.Event | None = None,
    first_index: int = 0,
) -> Iterator[Event]:
    """Analyse `batches` (tensors, (images, labels) pairs or `Batch`) layer by layer.

    `keep_maps` keeps thumbnails for the first N images, or for the given indices;
    images are numbered from `first_index` (a shard's place in the whole dataset).
    Setting `cancel` stops after the current batch; the result then holds what
    was finished. A CUDA out-of-memory error halves the batch and retries. Any
    other failure of a batch (the model's own, say) but the user's mistakes ends the
    stream with `BatchFailed`, which names the batch and its images and holds what
    was analysed before it.
    """
    settings.check()
    device = resolve_device(settings.device)
    model.to(device)
    keep = range(keep_maps) if isinstance(keep_maps, int) else frozenset(keep_maps)
    chunk = settings.batch_size
    result: AnalysisResult | None = None
    skipped: list[tuple[str, str]] = []
    named = 0  # of the skipped files, those a notice named already
    start = time.perf_counter()
    done = 0
    position = 0  # of the next image in `batches`, for batches that do not give their own
    analysed = 0  # batches analysed (after any split for memory)
    failed: tuple[str, Exception] | None = None  # what stopped the run, and the error behind it

    for item in batches:
        batch = _as_batch(item)
        indices = batch.indices if batch.indices is not None else list(range(position, position + len(batch.images)))
        position = max([position - 1, *indices, *(i for i, _, _ in batch.skipped)]) + 1
        if batch.skipped:
            if not skipped:  # the first ones at once; the rest in one notice at the end, not one per batch
                yield Notice(skipped_message([(name, why) for _, name, why in batch.skipped]))
                named = len(batch.skipped)
            skipped += [(name, why) for _, name, why in batch.skipped]
            if total is not None:
                total -= len(batch.skipped)
        pos = 0
        while pos < len(batch.images):
            if cancel is not None and cancel.is_set():
                break
            size = min(chunk, len(batch.images) - pos)
            part = Batch(
                batch.images[pos : pos + size],
                None if batch.labels is None else batch.labels[pos : pos + size],
                None if batch.names is None else batch.names[pos : pos + size],
            )
            numbers = [first_index + i for i in indices[pos : pos + size]]
            try:
                rows, sal = analyse_batch(model, part, layers, settings, device, numbers, keep, trace=result is None)
            except SemiotuiError:
                raise  # the user's mistake: its message says what to change
            except OUT_OF_MEMORY:
                if size == 1:
                    raise OutOfMemory(
                        f"out of memory on {device} even with one image per batch; "
                        "select fewer layers or use `device` cpu"
                    ) from None
                chunk = max(1, size // 2)
                _free_memory(device)
                yield Notice(f"out of memory on {device} with {size} images per batch; retrying with {chunk}")
                continue
            except Exception as exc:  # reported with what was analysed before it, after the stream's end
                failed = (_failed_batch(analysed + 1, part.names or [f"#{i}" for i in numbers], exc), exc)
                break
            analysed += 1
            if result is None:
                result = AnalysisResult(layers=list(sal.maps), settings=settings, device=str(device),
                                        flow=sal.flow, scores=sal.scores, classes=sal.logits.shape[1])
                yield from _first_notices(sal)
            result.images.extend(rows)
            result.stats.update(np.stack([r.entropy for r in rows]))
            done += len(rows)
            pos += size
            elapsed = time.perf_counter() - start
            yield BatchDone(rows, done, total, done / elapsed if elapsed > 0 else 0.0, result.flow, result.classes,
                            result.scores)
        if failed is not None or (cancel is not None and cancel.is_set()):
            break

    if skipped[named:]:
        yield Notice(skipped_message(skipped[named:], more=True))
    if result is None:
        result = AnalysisResult(layers=[], settings=settings, device=str(device))
    # Stopped with images left: a Ctrl-C during the last batch (or after it, in the control) cuts nothing.
    result.cancelled = cancel is not None and cancel.is_set() and (total is None or len(result.images) < total)
    result.seconds = time.perf_counter() - start
    result.total = total
    result.skipped = skipped
    if failed is not None:
        result.failed, error = failed
        raise BatchFailed(result.failed, result) from error
    yield Finished(result)


def _failed_batch(number: int, names: list[str], error: Exception, shown: int = 5) -> str:
    """One line naming the batch that failed, (the first few of) its images, and the error."""
    rest = f", and {len(names) - shown} more" if len(names) > shown else ""
    return f"the analysis failed on batch {number} ({', '.join(names[:shown])}{rest}): {one_line(error, short=True)}"


def skipped_message(skipped: list[tuple[str, str]], named: int = 5, *, more: bool = False) -> str:
    """One line naming (the first few of) the files found not to be readable images, with why.

    `more`: after a first such line.
    """
    shown = ", ".join(f"{name} ({why})" for name, why in skipped[:named])
    rest = f", and {len(skipped) - named} more" if len(skipped) > named else ""
    return f"skipped {len(skipped)}{' more' if more else ''} file(s) that are not readable images: {shown}{rest}"


def add_maps(model: nn.Module, images, layers: list[str], result: AnalysisResult, positions: Iterable[int]) -> None:
    """Thumbnails for the images of `result` at `positions` that have none, from one more small pass.

    `images` is the source the result came from (an `engine.data.ImageSource`).
    """
    missing = [k for k in positions if result.images[k].maps is None]
    device = resolve_device(result.settings.device)
    waiting = iter(missing)  # the rows the batches' images belong to, in order
    # In the analysis's batch size: a program exported for one image at a time takes no other.
    for batch in images.subset([result.images[k].index for k in missing]).batches(result.settings.batch_size):
        n = len(batch.images)
        rows, _ = analyse_batch(model, batch, layers, result.settings, device, list(range(n)), range(n))
        for k, row in zip(waiting, rows):
            result.images[k].maps = row.maps


def _first_notices(sal: SaliencyResult) -> Iterator[Notice]:
    """What the first batch shows about the model that the user must know once."""
    if sal.scores != "logits":
        yield Notice(f"the model's output holds {sal.scores}: the maps explain their logarithm (log-softmax), "
                     "and confidences are the model's own")
    if sal.unlinked:
        shown = ", ".join(sal.unlinked[:3]) + (f" and {len(sal.unlinked) - 3} more" if len(sal.unlinked) > 3 else "")
        yield Notice(f"the class score does not depend on {shown}: the model detaches that output or computes "
                     "it without gradients, so its maps are empty")


def analyse_batch(
    model: nn.Module,
    batch: Batch,
    layers: list[str],
    settings: AnalysisSettings,
    device: torch.device,
    indices: list[int],
    keep: Collection[int],
    *,
    trace: bool = False,
) -> tuple[list[ImageResult], SaliencyResult]:
    """Rows of one batch; `indices` number its images, and those in `keep` keep thumbnails."""
    images = batch.images.to(device, non_blocking=True)
    labels = batch.labels
    target = settings.target
    if target == "label":
        if labels is None or bool((labels < 0).any()):
            raise InvalidValue("`target` 'label' needs a label for every image; use `target` 'predicted'")
        target = labels.to(device)
    elif target == "predicted":
        target = None
    sal = compute_saliency(  # native maps: the arrangement estimator reorders their pixels before upsampling
        model, images, layers, target=target, method=settings.method, upsample=False, output=settings.output,
        trace=trace,
    )
    size = tuple(images.shape[-2:]) if settings.upsample else None
    entropy, empty = (t.cpu().numpy() for t in _entropy_of_maps(sal.maps, settings, size))
    entropy[empty] = settings.empty_value
    probs = sal.probabilities
    confidence, predicted = probs.max(dim=1)
    top = probs.topk(min(5, probs.shape[1]), dim=1).indices.tolist()
    predicted, confidence = predicted.tolist(), confidence.tolist()
    targets = sal.targets.tolist()
    wanted = [i for i in range(len(images)) if indices[i] in keep]
    thumbs = _thumbnails(sal.maps, wanted, settings.thumbnail, size)
    rows = []
    for i in range(len(images)):
        label = None if labels is None or int(labels[i]) < 0 else int(labels[i])
        rows.append(
            ImageResult(
                index=indices[i],
                name=batch.names[i] if batch.names else f"#{indices[i]}",
                label=label,
                predicted=predicted[i],
                confidence=confidence[i],
                target=targets[i],
                entropy=entropy[i],
                maps=thumbs.get(i),
                empty=empty[i],
                top=tuple(top[i]),
            )
        )
    return rows, sal


def _entropy_of_maps(
    maps: dict[str, torch.Tensor], settings: AnalysisSettings, size: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, layers) entropy and empty maps of native maps measured at `size` (None: native); maps of one size
    are measured in a single batched call."""
    by_shape: dict[tuple[int, int], list[int]] = {}
    tensors = list(maps.values())
    for j, m in enumerate(tensors):
        by_shape.setdefault(tuple(m.shape[-2:]), []).append(j)
    b = tensors[0].shape[0]
    out = torch.empty(b, len(tensors), dtype=torch.float64, device=tensors[0].device)
    empty = torch.empty(b, len(tensors), dtype=torch.bool, device=tensors[0].device)
    for cols in by_shape.values():
        stacked = torch.cat([tensors[j] for j in cols])  # (len(cols) * B, h, w)
        bits, blank = measure_maps(
            stacked, levels=settings.levels, normalized=settings.normalized, estimator=settings.estimator, size=size
        )
        out[:, cols] = bits.view(len(cols), b).T.to(out.dtype)
        empty[:, cols] = blank.view(len(cols), b).T
    return out, empty


def _thumbnails(maps: dict[str, torch.Tensor], wanted: list[int], side: int,
                size: tuple[int, int] | None) -> dict[int, dict[str, np.ndarray]]:
    """Small float32 copies of the chosen images' maps (as measured: upsampled to `size`), longest side at most
    `side`."""
    if not wanted:
        return {}
    out: dict[int, dict[str, np.ndarray]] = {i: {} for i in wanted}
    for name, m in maps.items():
        sel = m[wanted].float()
        if size is not None:
            sel = upsample_map(sel, size)
        h, w = sel.shape[-2:]
        scale = side / max(h, w)
        if scale < 1:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            sel = F.interpolate(sel[:, None], size=size, mode="area")[:, 0]
        for k, i in enumerate(wanted):
            out[i][name] = sel[k].cpu().numpy()
    return out


def _as_batch(item: object) -> Batch:
    if isinstance(item, Batch):
        return item
    if isinstance(item, torch.Tensor):
        return Batch(item)
    if isinstance(item, (tuple, list)) and len(item) >= 2 and isinstance(item[0], torch.Tensor):
        return Batch(item[0], torch.as_tensor(item[1]).long())
    raise TypeError(f"expected a Batch, an image tensor or (images, labels), got {type(item).__name__}")


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
