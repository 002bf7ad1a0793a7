"""The reports' heatmap tiles: each kept image, and its map at every layer over it, as small PNGs."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from semiotui.themes.colormaps import overlay

from ..analysis import AnalysisResult
from ..workspace import Workspace

MAP_PIXELS = 96  # side of a heatmap tile in the reports


@dataclass(frozen=True)
class Tile:
    image: int  # index into result.images
    layer: str  # "" for the image itself
    png: bytes
    file: str  # its name in the report's images/ folder


def map_tiles(workspace: Workspace, result: AnalysisResult) -> list[Tile]:
    """PNG heatmaps of the images whose maps were kept, one per layer after the image itself."""
    tiles = []
    for k, r in enumerate(result.images):
        if r.maps is None:
            continue
        picture = workspace.images.image(r.index)
        size = tile_size(picture.shape[:2])
        tiles.append(Tile(k, "", png_bytes(overlay(picture, None, *size)), _tile_file(r.index, "")))
        for layer in result.layers:
            tiles.append(Tile(k, layer, png_bytes(overlay(picture, r.maps[layer], *size)), _tile_file(r.index, layer)))
    return tiles


def tile_size(shape: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a tile of a picture of `shape`: its longer side `MAP_PIXELS`, its aspect kept."""
    h, w = shape
    scale = MAP_PIXELS / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def png_bytes(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _tile_file(index: int, layer: str) -> str:
    """A file name for any layer name: unsafe characters (such as /) replaced, with a hash to keep names apart."""
    layer = layer.replace("#", "_call") or "input"
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", layer)
    if safe != layer:
        safe += "-" + hashlib.sha1(layer.encode()).hexdigest()[:8]
    return f"image{index:05d}_{safe}.png"
