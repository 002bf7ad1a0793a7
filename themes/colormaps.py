"""Heatmap colour maps: 256-entry RGB lookup tables built from a few anchor colours (no matplotlib)."""

from __future__ import annotations

import numpy as np

# Anchor colours, evenly spaced from 0 to 1; close to matplotlib's maps of the same names.
ANCHORS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "inferno": (
        (0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99),
        (212, 72, 66), (245, 125, 21), (250, 193, 39), (252, 255, 164),
    ),
    "viridis": (
        (68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
        (31, 158, 137), (53, 183, 121), (109, 205, 89), (180, 222, 44), (253, 231, 37),
    ),
    "magma": (
        (0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129),
        (181, 54, 122), (229, 80, 100), (251, 135, 97), (254, 194, 135), (252, 253, 191),
    ),
    "hot": ((0, 0, 0), (230, 0, 0), (255, 210, 0), (255, 255, 255)),
    "gray": ((0, 0, 0), (255, 255, 255)),
}


def lookup_table(anchors: tuple[tuple[int, int, int], ...], size: int = 256) -> np.ndarray:
    """A (size, 3) uint8 table interpolating linearly between evenly spaced anchors."""
    stops = np.linspace(0.0, 1.0, len(anchors))
    points = np.linspace(0.0, 1.0, size)
    rgb = np.asarray(anchors, dtype=np.float64)
    table = np.stack([np.interp(points, stops, rgb[:, c]) for c in range(3)], axis=1)
    return np.clip(np.rint(table), 0, 255).astype(np.uint8)


COLORMAPS: dict[str, np.ndarray] = {name: lookup_table(anchors) for name, anchors in ANCHORS.items()}
DEFAULT_COLORMAP = "inferno"


def colorize(values: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """RGB uint8 colours (..., 3) of `values` in [0, 1] under the named map."""
    table = COLORMAPS[colormap]
    index = np.clip(np.rint(np.nan_to_num(values) * (len(table) - 1)), 0, len(table) - 1).astype(np.intp)
    return table[index]


def resize_bilinear(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of the first two axes, pixel centres aligned (`align_corners=False`)."""
    src_h, src_w = array.shape[:2]

    def axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0, src - 1)
        low = np.floor(pos).astype(np.intp)
        high = np.minimum(low + 1, src - 1)
        return low, high, pos - low

    y0, y1, fy = axis(src_h, height)
    x0, x1, fx = axis(src_w, width)
    a = array.astype(np.float64)
    extra = (1,) * (a.ndim - 2)
    fy = fy.reshape((-1, 1) + extra)
    fx = fx.reshape((1, -1) + extra)
    top = a[y0][:, x0] * (1 - fx) + a[y0][:, x1] * fx
    bottom = a[y1][:, x0] * (1 - fx) + a[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def normalize(saliency: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1]; a constant or non-finite map becomes zeros."""
    s = np.nan_to_num(np.asarray(saliency, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(s.min()), float(s.max())
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return np.zeros_like(s)
    return (s - low) / (high - low)


def overlay(
    image: np.ndarray,
    saliency: np.ndarray | None,
    height: int,
    width: int,
    *,
    colormap: str = DEFAULT_COLORMAP,
    opacity: float = 0.6,
    saturation: float = 0.0,
) -> np.ndarray:
    """`saliency` in a colour map blended over `image`, both resized: (height, width, 3) uint8.

    The image's colours are muted to `saturation` (0: grey, 1: as they are) so the map stands out;
    stronger saliency is more opaque, so the image shows through where the map is low.
    """
    picture = resize_bilinear(image, height, width)
    luma = (picture @ np.array([0.299, 0.587, 0.114]))[..., None]
    picture = luma + saturation * (picture - luma)
    if saliency is None:
        return np.clip(np.rint(picture), 0, 255).astype(np.uint8)
    level = normalize(resize_bilinear(saliency, height, width))
    alpha = (opacity * (0.4 + 0.6 * level))[..., None]
    colours = colorize(level, colormap).astype(np.float64)
    return np.clip(np.rint(picture * (1 - alpha) + colours * alpha), 0, 255).astype(np.uint8)
