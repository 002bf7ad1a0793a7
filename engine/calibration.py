"""Networks whose answer is known without semiotui, and how often the verdict gets it right
(semiotui/docs/METHOD.md §3.5).

The verdict is calibrated the way a test is: on *positive* networks, trained
where the label depends only on a small object in clutter, so their deep
Grad-CAM maps gather on it (checked independently: the share of the map's
mass inside the object's box, layer by layer); and on *negative* ones that
aggregate nothing: untrained, trained on random labels, and the positive
network with its weights shuffled. `calibrate` runs the analysis and its
control on each, seeded, and counts how often superization is claimed: the
false-positive rate on the negatives, the power on the positives.
`benchmarks/calibration.py` prints the table; the tests run a small slice.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .analysis import AnalysisResult, AnalysisSettings, analyse
from .control import ControlResult, ControlSettings, control_analysis, match_moments, shuffle_weights
from .saliency import layer_saliency, upsample_map
from .superization import Superization, superization

# The object deciding the label: 7x7 glyphs, one per class.
GLYPHS = {
    "plus": ["...#...", "...#...", "...#...", "#######", "...#...", "...#...", "...#..."],
    "cross": ["#.....#", ".#...#.", "..#.#..", "...#...", "..#.#..", ".#...#.", "#.....#"],
    "frame": ["#######", "#.....#", "#.....#", "#.....#", "#.....#", "#.....#", "#######"],
    "tee": ["#######", "...#...", "...#...", "...#...", "...#...", "...#...", "...#..."],
}
_GLYPHS = np.stack([np.array([[c == "#" for c in row] for row in g], dtype=np.float32) for g in GLYPHS.values()])
KINDS = ("positive", "untrained", "random labels", "shuffled")
NEGATIVE = ("untrained", "random labels", "shuffled")


def clutter_images(count: int, seed: int, *, size: int = 32) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """`count` images of a small glyph in clutter: (normalised images, labels, the glyph's boxes (y0, x0, y1, x1)).

    Each image is a colour gradient crossed by random strokes and blobs; one
    7x7 glyph, whose kind is the label (classes in turn), sits at a random
    place in a colour that stands out from what it covers. Nothing else in the
    image depends on the label.
    """
    rng = np.random.default_rng(seed)
    images = np.empty((count, 3, size, size), np.float32)
    labels = np.arange(count) % len(_GLYPHS)
    boxes = np.empty((count, 4), np.int64)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ramp = np.linspace(0, 1, 40, dtype=np.float32)
    k = _GLYPHS.shape[1]
    for i in range(count):
        back, shade = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        angle = rng.uniform(0, 2 * np.pi)
        t = (np.cos(angle) * (xx / size - 0.5) + np.sin(angle) * (yy / size - 0.5) + 0.5)
        img = back[:, None, None] + t[None] * (shade - back)[:, None, None]
        for _ in range(rng.integers(6, 12)):
            colour = rng.uniform(0, 1, 3)[:, None]
            if rng.random() < 0.5:  # a stroke
                x0, y0 = rng.uniform(0, size, 2)
                direction, length = rng.uniform(0, np.pi), rng.uniform(6, 20)
                px = np.clip((x0 + np.cos(direction) * length * ramp).astype(int), 0, size - 1)
                py = np.clip((y0 + np.sin(direction) * length * ramp).astype(int), 0, size - 1)
                img[:, py, px] = colour
            else:  # a blob
                cx, cy = rng.uniform(0, size, 2)
                img[:, (xx - cx) ** 2 + (yy - cy) ** 2 < rng.uniform(1.5, 4) ** 2] = colour
        y, x = rng.integers(2, size - k - 2, 2)
        under = img[:, y:y + k, x:x + k].mean(axis=(1, 2))
        colour = rng.uniform(0, 1, 3)
        while np.abs(colour - under).sum() < 0.6:
            colour = rng.uniform(0, 1, 3)
        glyph = _GLYPHS[labels[i]][None] > 0
        img[:, y:y + k, x:x + k] = np.where(glyph, colour[:, None, None], img[:, y:y + k, x:x + k])
        images[i] = img + rng.normal(0, 0.03, img.shape)
        boxes[i] = (y, x, y + k, x + k)
    normalised = (np.clip(images, 0, 1) - 0.5) / 0.29
    return torch.from_numpy(normalised), torch.from_numpy(labels), boxes


class ClutterNet(nn.Module):
    """A small VGG-like CNN: six 3x3 convolutions with batch norm in three pairs, max pooling after each pair."""

    def __init__(self, widths: Sequence[int] = (16, 16, 32, 32, 64, 64), classes: int = len(GLYPHS)) -> None:
        super().__init__()
        channels = 3
        self.names: list[str] = []
        for n, width in enumerate(widths, start=1):
            setattr(self, f"conv{n}", nn.Conv2d(channels, width, 3, padding=1, bias=False))
            setattr(self, f"bn{n}", nn.BatchNorm2d(width))
            self.names.append(f"conv{n}")
            if n % 2 == 0:
                setattr(self, f"pool{n // 2}", nn.MaxPool2d(2))
                self.names.append(f"pool{n // 2}")
            channels = width
        self.head = nn.Linear(channels, classes)
        self.depth = len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for n in range(1, self.depth + 1):
            x = F.relu(getattr(self, f"bn{n}")(getattr(self, f"conv{n}")(x)))
            if n % 2 == 0:
                x = getattr(self, f"pool{n // 2}")(x)
        return self.head(x.mean(dim=(2, 3)))


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, seed: int,
          batch_size: int = 64, rate: float = 3e-3) -> nn.Module:
    """Train with AdamW on a one-cycle schedule, seeded; returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=rate, weight_decay=5e-4)
    per_epoch = len(images) // batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=rate, total_steps=epochs * per_epoch,
                                                   pct_start=0.2)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(images), generator=generator)[: per_epoch * batch_size].split(batch_size):
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model(images).argmax(dim=1) == labels).float().mean())


def in_box(model: nn.Module, images: torch.Tensor, boxes: np.ndarray, layers: Sequence[str]) -> np.ndarray:
    """Per layer, the mean share of the Grad-CAM map's mass inside the object's box (NaN: every map empty).

    Maps upsampled to the image as the analysis measures them; this uses no
    entropy and no control, so it says whether a network localises the object
    independently of the verdict. A map spread evenly holds the box's share of
    the image (`box_share`).
    """
    maps = layer_saliency(model, images, list(layers), method="gradcam")
    mask = torch.zeros(len(images), *images.shape[-2:], dtype=torch.float64)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        mask[i, y0:y1, x0:x1] = 1
    out = []
    for name in layers:
        m = upsample_map(maps[name].double(), images.shape[-2:])
        total = m.sum(dim=(1, 2))
        share = (m * mask).sum(dim=(1, 2)) / total.clamp(min=1e-300)
        out.append(float(share[total > 0].mean()) if bool((total > 0).any()) else np.nan)
    return np.array(out)


def box_share(boxes: np.ndarray, size: int) -> float:
    """The share of the image the object's box covers: what an evenly spread map puts inside it."""
    return float(np.mean([(y1 - y0) * (x1 - x0) for y0, x0, y1, x1 in boxes]) / size**2)


@dataclass(frozen=True)
class CalibrationSettings:
    """The networks, images and configurations of a calibration run."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    size: int = 32  # image side, pixels
    widths: tuple[int, ...] = (16, 16, 32, 32, 64, 64)
    train_images: int = 4000
    epochs: int = 12
    images: int = 128  # analysed per network
    control_images: int = 64
    draws: tuple[int, ...] = (8, 16)  # control sizes tried
    null: str = "matched"  # how control networks are made (`engine.control.ControlSettings.null`)
    selections: tuple[str, ...] = ("all", "every other", "two")
    analysis: AnalysisSettings = field(default_factory=lambda: AnalysisSettings(device="cpu", batch_size=64))


# The tests' slice (tests/test_calibration.py; `benchmarks/calibration.py --quick`): one seed, tiny networks.
QUICK = CalibrationSettings(seeds=(0,), widths=(8, 8, 16, 16, 32, 32), train_images=2500, epochs=10, images=64,
                            draws=(8,))


@dataclass
class NetworkRun:
    """One network's analysis and its largest control; each configuration's verdict is read from them."""

    kind: str
    seed: int
    model: nn.Module
    accuracy: float
    localisation: np.ndarray  # (layers,) share of Grad-CAM mass in the box
    result: AnalysisResult
    control: ControlResult
    seconds: float


@dataclass
class Verdict:
    kind: str
    seed: int
    selection: str
    draws: int
    claimed: bool
    finding: str  # the claimed range, or ""


def select(names: Sequence[str], selection: str) -> list[int]:
    """The columns a layer selection keeps: all, every other one, or two chosen (the second and second-last)."""
    if selection == "all":
        return list(range(len(names)))
    if selection == "every other":
        return list(range(0, len(names), 2))
    if selection == "two":
        return [1, len(names) - 2]
    raise ValueError(f"unknown selection {selection!r}")


def known_networks(seed: int, settings: CalibrationSettings, fitting: torch.Tensor,
                   cache: Path | None = None) -> dict[str, nn.Module]:
    """The four networks of one seed: positive, untrained, trained on random labels, and the positive shuffled.

    The shuffled one is made as a control network is (`engine.control`), with
    its own seed, so it is a working network with nothing learned in its
    patterns; the untrained one keeps PyTorch's initialisation and batch norm
    statistics. With `cache`, the trained weights are kept there and read
    back by a later run with the same settings.
    """
    key = f"seed{seed}-{settings.size}-{'x'.join(map(str, settings.widths))}-{settings.train_images}-{settings.epochs}"
    stored = None if cache is None else cache / f"{key}.pt"
    torch.manual_seed(seed)
    untrained = ClutterNet(settings.widths).eval()
    if stored is not None and stored.exists():
        weights = torch.load(stored, weights_only=True)
        positive, random_labels = ClutterNet(settings.widths), ClutterNet(settings.widths)
        positive.load_state_dict(weights["positive"])
        random_labels.load_state_dict(weights["random labels"])
        positive.eval(), random_labels.eval()
    else:
        images, labels = clutter_images(settings.train_images, seed, size=settings.size)[:2]
        torch.manual_seed(seed)
        positive = train(ClutterNet(settings.widths), images, labels, epochs=settings.epochs, seed=seed)
        shuffled_labels = torch.from_numpy(np.random.default_rng([seed, 1]).integers(0, len(GLYPHS), len(labels)))
        torch.manual_seed(seed)
        random_labels = train(ClutterNet(settings.widths), images, shuffled_labels, epochs=settings.epochs,
                              seed=seed)
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"positive": positive.state_dict(), "random labels": random_labels.state_dict()}, stored)
    shuffled = copy.deepcopy(positive)
    shuffle_weights(shuffled, 10_000 + seed)
    match_moments(shuffled, positive, fitting)
    return {"positive": positive, "untrained": untrained, "random labels": random_labels, "shuffled": shuffled}


def run_network(kind: str, seed: int, model: nn.Module, val: tuple[torch.Tensor, torch.Tensor, np.ndarray],
                settings: CalibrationSettings) -> NetworkRun:
    """The analysis of one network on the validation images, and its largest control."""
    start = time.perf_counter()
    images, labels, boxes = val
    names = model.names
    result = analyse(model, [(images, labels)], names, settings.analysis)
    control = control_analysis(model, [(images, labels)], result,
                               ControlSettings(draws=max(settings.draws), images=settings.control_images, seed=0,
                                               null=settings.null))
    return NetworkRun(kind=kind, seed=seed, model=model, accuracy=accuracy(model, images, labels),
                      localisation=in_box(model, images, boxes, names), result=result, control=control,
                      seconds=time.perf_counter() - start)


def verdicts(run: NetworkRun, settings: CalibrationSettings) -> list[Verdict]:
    """The verdict of each configuration (layer selection × control size), read from the network's run.

    Maps are per layer and control networks are seeded in order, so a run with
    fewer layers or fewer networks gives exactly these columns and the first
    networks of the largest run.
    """
    out = []
    for selection in settings.selections:
        cols = select(run.result.layers, selection)
        for draws in settings.draws:
            sup = configuration(run.result, run.control, cols, draws)
            best = sup.finding
            out.append(Verdict(run.kind, run.seed, selection, draws, bool(sup.claimed),
                               "" if best is None else f"{sup.layers[best.start]}→{sup.layers[best.end]}"))
    return out


def configuration(result: AnalysisResult, control: ControlResult, cols: Sequence[int], draws: int) -> Superization:
    """The verdict of the layers at `cols` against the first `draws` control networks."""
    cols = list(cols)
    return superization(result.entropy[:, cols], [result.layers[j] for j in cols], empty=result.empty[:, cols],
                        control=control.entropy[:draws][:, :, cols], control_rows=control.rows,
                        control_empty=control.empty[:draws][:, :, cols], within=result.settings.entropy_range)


def calibrate(settings: CalibrationSettings = CalibrationSettings(), *, cache: Path | None = None,
              progress: Callable[[str], None] = lambda line: None) -> tuple[list[NetworkRun], list[Verdict]]:
    """Train and analyse every seed's known networks; each network's run and every configuration's verdict."""
    runs: list[NetworkRun] = []
    found: list[Verdict] = []
    for seed in settings.seeds:
        start = time.perf_counter()
        val = clutter_images(settings.images, 1_000_000 + seed, size=settings.size)
        nets = known_networks(seed, settings, val[0][: settings.control_images], cache)
        progress(f"seed {seed}: trained in {time.perf_counter() - start:.0f} s")
        for kind in KINDS:
            run = run_network(kind, seed, nets[kind], val, settings)
            runs.append(run)
            found += verdicts(run, settings)
            claims = sum(v.claimed for v in found if v.seed == seed and v.kind == kind)
            progress(f"seed {seed}: {kind}: accuracy {run.accuracy:.2f}, claimed in {claims} of "
                     f"{len(settings.selections) * len(settings.draws)} configurations ({run.seconds:.0f} s)")
    return runs, found


def rates(found: Iterable[Verdict]) -> dict[tuple[str, str, int], tuple[int, int]]:
    """(claims, runs) per (kind, selection, draws)."""
    out: dict[tuple[str, str, int], tuple[int, int]] = {}
    for v in found:
        claims, runs = out.get((v.kind, v.selection, v.draws), (0, 0))
        out[(v.kind, v.selection, v.draws)] = (claims + v.claimed, runs + 1)
    return out
