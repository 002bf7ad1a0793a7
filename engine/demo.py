"""The bundled demo: procedural shape images, a small VGG-like CNN trained on them, and its export.

`semiotui` with no MODEL opens this model on these images, so a new user sees the
analysis work at once; `scripts/train_demo.py` retrains the weights reproducibly.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from .atomic import staged
from .data import ImageSource
from .errors import InvalidValue, PathInTheWay
from .workspace import InputSpec

CLASSES: list[str] = ["circle", "square", "triangle", "star", "cross", "ring", "crescent", "arrow"]

# Per-channel pixel statistics of the training images, rounded: the generator treats the channels alike.
INPUT_SPEC = InputSpec(size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.29, 0.29, 0.29))

SPLITS: tuple[str, ...] = ("train", "val")
OPENED_IMAGES = 200  # validation images `semiotui` opens the demo with
VAL_IMAGES = 300  # validation images `export_demo` writes, and pruning measures accuracy on
TRAIN_IMAGES = 1024  # training images pruning fine-tunes and calibrates on

_SIZE = 64
_SUPERSAMPLE = 4  # shapes and clutter are drawn at 4x and box-filtered down, for clean edges


class DemoNet(nn.Module):
    """A small VGG-like CNN: six 3x3 convolutions in four groups with max pooling between them."""

    def __init__(self, num_classes: int = len(CLASSES)) -> None:
        super().__init__()
        groups = [[16], [32, 32], [64, 64], [128]]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels, n = 3, 0
        for g, widths in enumerate(groups):
            if g:
                layers[f"pool{g}"] = nn.MaxPool2d(2)
            for width in widths:
                n += 1
                layers[f"conv{n}"] = nn.Conv2d(channels, width, 3, padding=1, bias=False)
                layers[f"bn{n}"] = nn.BatchNorm2d(width)
                layers[f"relu{n}"] = nn.ReLU()
                channels = width
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _polygon(label: int) -> list[tuple[float, float]] | None:
    """The shape's outline as unit-radius points, or None for shapes drawn from circles."""
    name = CLASSES[label]
    if name in ("square", "triangle"):
        sides = 4 if name == "square" else 3
        angles = np.arange(sides) * 2 * math.pi / sides
        return [(math.cos(a), math.sin(a)) for a in angles]
    if name == "star":
        angles = np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return list(zip(radii * np.cos(angles), radii * np.sin(angles)))
    if name == "cross":
        a, b = 0.3, 1.0
        return [(b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a), (-b, -a),
                (-a, -a), (-a, -b), (a, -b), (a, -a)]
    if name == "arrow":
        return [(1.0, 0.0), (0.15, 0.75), (0.15, 0.28), (-1.0, 0.28), (-1.0, -0.28),
                (0.15, -0.28), (0.15, -0.75)]
    return None


def _contrasting_colour(rng: np.random.Generator, avoid: list[np.ndarray], distance: float) -> np.ndarray:
    """A random RGB colour at least `distance` (0-255 units) from every colour in `avoid`."""
    while True:
        colour = rng.integers(0, 256, 3).astype(np.float64)
        if all(np.linalg.norm(colour - other) >= distance for other in avoid):
            return colour


def _shape_mask(rng: np.random.Generator, label: int) -> Image.Image:
    """The shape's coverage at the supersampled size: position, scale and rotation drawn from `rng`."""
    big = _SIZE * _SUPERSAMPLE
    radius = rng.uniform(12, 22)
    cx, cy = rng.uniform(radius * 0.8, _SIZE - radius * 0.8, 2)
    angle = rng.uniform(0, 2 * math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)

    def place(x: float, y: float) -> tuple[float, float]:
        return ((cx + radius * (x * cos - y * sin)) * _SUPERSAMPLE,
                (cy + radius * (x * sin + y * cos)) * _SUPERSAMPLE)

    def disc(x: float, y: float, r: float, fill: int) -> None:
        px, py = place(x, y)
        s = r * radius * _SUPERSAMPLE
        draw.ellipse((px - s, py - s, px + s, py + s), fill=fill)

    outline = _polygon(label)
    if outline is not None:
        draw.polygon([place(x, y) for x, y in outline], fill=255)
    else:
        disc(0, 0, 1.0, 255)
        name = CLASSES[label]
        if name == "ring":
            disc(0, 0, 0.6, 0)
        elif name == "crescent":
            disc(0.45, 0, 0.85, 0)
    return mask


def _clutter(rng: np.random.Generator, draw: ImageDraw.ImageDraw, colours: list[np.ndarray],
             count: int, blobs: bool) -> None:
    """Draw `count` random lines (and, if `blobs`, small discs) in colours away from `colours`."""
    for _ in range(count):
        fill = tuple(int(c) for c in _contrasting_colour(rng, colours, 60))
        if blobs and rng.random() < 0.5:
            x, y = rng.uniform(0, _SIZE, 2) * _SUPERSAMPLE
            rx, ry = rng.uniform(1.5, 4.5, 2) * _SUPERSAMPLE
            draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=fill)
        else:
            x0, y0, x1, y1 = rng.uniform(-8, _SIZE + 8, 4) * _SUPERSAMPLE
            width = int(rng.uniform(0.8, 2.2) * _SUPERSAMPLE)
            draw.line((x0, y0, x1, y1), fill=fill, width=width)


def render_image(rng: np.random.Generator, label: int) -> Image.Image:
    """A 64x64 RGB image of `CLASSES[label]` on a gradient cluttered with lines and blobs, plus noise."""
    return _render(rng, label)[0]


def shape_box(split: str, i: int, *, seed: int = 0) -> tuple[int, int, int, int]:
    """The box (y0, x0, y1, x1) around the shape of `demo_samples(split, ...)[i]`, in its 64x64 pixels."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split), i)))
    mask = np.asarray(_render(rng, i % len(CLASSES))[1].resize((_SIZE, _SIZE), Image.Resampling.BOX)) > 0
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _render(rng: np.random.Generator, label: int) -> tuple[Image.Image, Image.Image]:
    """`render_image`, and the shape's coverage at the supersampled size."""
    big = _SIZE * _SUPERSAMPLE
    back = rng.integers(0, 256, 3).astype(np.float64)
    shade = np.clip(back + rng.normal(0, 40, 3), 0, 255)
    direction = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(-0.5, 0.5, _SIZE)
    t = math.cos(direction) * ramp[None, :] + math.sin(direction) * ramp[:, None] + 0.5
    canvas = np.clip(back + t[..., None] * (shade - back), 0, 255)
    image = Image.fromarray(canvas.astype(np.uint8), "RGB").resize((big, big), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)

    colour = _contrasting_colour(rng, [back, shade], 110)
    _clutter(rng, draw, [colour], int(rng.integers(1, 5)), blobs=True)
    mask = _shape_mask(rng, label)
    image.paste(tuple(int(c) for c in colour), (0, 0), mask)
    _clutter(rng, draw, [colour], int(rng.random() < 0.3), blobs=False)

    small = np.asarray(image.resize((_SIZE, _SIZE), Image.Resampling.BOX), dtype=np.float64)
    noisy = small + rng.normal(0, rng.uniform(2, 12), small.shape)
    return Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8), "RGB"), mask


def demo_samples(split: str, count: int, *, seed: int = 0) -> list[tuple[Image.Image, int]]:
    """`count` (image, label) pairs of `split`, labels cycling through the classes.

    Sample i comes from its own generator seeded by (seed, split, i): the same arguments
    give the same pixels, a larger `count` extends a smaller one, and the splits never meet.
    """
    if split not in SPLITS:
        raise InvalidValue(f"unknown demo split {split!r}; expected one of {', '.join(SPLITS)}")
    key = SPLITS.index(split)
    samples = []
    for i in range(count):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key, i)))
        label = i % len(CLASSES)
        samples.append((render_image(rng, label), label))
    return samples


def demo_images(
    split: str = "val",
    count: int = OPENED_IMAGES,
    spec: InputSpec = INPUT_SPEC,
    *,
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> ImageSource:
    """The first `count` images of `split` as an image source named `demo/<split>/<class>_NNNN`, labelled.

    Without `shuffle`, only the images `limit` keeps are drawn (a smaller count draws a prefix of a larger one).
    """
    drawn = count if shuffle or limit is None else min(limit, count)
    samples = demo_samples(split, drawn)
    return ImageSource.from_images(
        [image for image, _ in samples],
        spec,
        labels=[label for _, label in samples],
        class_names=CLASSES,
        names=[f"demo/{split}/{CLASSES[label]}_{i:04d}" for i, (_, label) in enumerate(samples)],
        limit=limit,
        shuffle=shuffle,
        seed=seed,
    )


def preprocess(image: Image.Image) -> torch.Tensor:
    """The model's input for one image: (3, 64, 64) float, normalised with INPUT_SPEC."""
    h, w = INPUT_SPEC.size
    image = image.convert("RGB")
    if image.size != (w, h):
        image = image.resize((w, h), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(INPUT_SPEC.mean).view(3, 1, 1)
    std = torch.tensor(INPUT_SPEC.std).view(3, 1, 1)
    return (x - mean) / std


def load_demo_model() -> DemoNet:
    """The bundled trained DemoNet (package data `weights/demo.pt`), in eval mode on the CPU."""
    model = DemoNet()
    with (files("semiotui.engine") / "weights" / "demo.pt").open("rb") as f:
        model.load_state_dict(torch.load(f, map_location="cpu", weights_only=True))
    return model.eval()


def export_demo(directory: str | Path, *, count: int = VAL_IMAGES) -> Path:
    """Write the validation images as `DIR/<class>/<class>_NNNN.png`, the model and its preprocessing.

    The model is a full module (`demo_model.pt`), so it also shows the `--trust` path.
    Everything is written into a hidden sibling folder that is renamed to DIR at the
    end, so a crash never leaves a half export; an existing non-empty DIR is refused.
    """
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise PathInTheWay(f"{target} already exists and is not an empty folder; "
                           "choose a new folder for the demo export (nothing was written)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # The rename replaces only an empty folder: it fails if one appeared with files meanwhile.
    with staged(target, folder=True, tag="partial") as staging:
        numbers = dict.fromkeys(CLASSES, 0)
        for image, label in demo_samples("val", count):
            name = CLASSES[label]
            folder = staging / name
            folder.mkdir(exist_ok=True)
            image.save(folder / f"{name}_{numbers[name]:04d}.png")
            numbers[name] += 1
        torch.save(load_demo_model(), staging / "demo_model.pt")
        spec = {"input_size": list(INPUT_SPEC.size), "mean": list(INPUT_SPEC.mean),
                "std": list(INPUT_SPEC.std), "classes": CLASSES}
        (staging / "preprocess.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return target
