"""What the interface and the reports work on: a loaded model, its layers, images and settings."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from .analysis import AnalysisResult, AnalysisSettings, Batch
from .control import ControlSettings
from .layers import LayerIndex


@dataclass(frozen=True)
class InputSpec:
    """How images are prepared for the model."""

    size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]


@runtime_checkable
class ImageSet(Protocol):
    """Named images with labels (-1: unknown): a source to analyse (`engine.data.ImageSource`) or a saved
    report's (`engine.saved.SavedImages`)."""

    names: list[str]
    labels: list[int]
    class_names: list[str] | None
    skipped: list[tuple[str, str]]  # (name, reason) of the files found not to be readable images, so far
    label_source: str | None  # where the labels come from (`ImageSource`); None: given, or unknown

    def __len__(self) -> int: ...

    def image(self, i: int) -> np.ndarray | None:
        """Image `i` as the model sees it before normalisation, uint8 (H, W, 3); None where it is not kept."""

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Normalised batches with labels and names, in order."""

    def example(self) -> torch.Tensor:
        """The first readable image as a (1, C, H, W) batch, to trace the model with."""

    def subset(self, indices: Sequence[int]) -> ImageSet:
        """The images at `indices`, in that order."""


@dataclass
class ModelInfo:
    path: str | None  # None for the bundled demo
    format: str  # "pickle", "state_dict", "checkpoint", "torchscript", "export", "demo"
    arch: str | None
    parameters: int


@dataclass
class Workspace:
    """A model ready to analyse, its selected layers, its images and the settings.

    A workspace opened from a saved report has no model, and its finished `result` instead.
    """

    model: nn.Module | None
    info: ModelInfo
    spec: InputSpec
    index: LayerIndex
    layers: list[str]  # selected module names, forward order
    images: ImageSet
    settings: AnalysisSettings
    class_names: list[str] | None = None
    warnings: list[str] = field(default_factory=list)
    result: AnalysisResult | None = None
    origin: str | None = None  # a saved report's folder and date; None for a loaded model
    control: ControlSettings | None = ControlSettings()  # None: no control analysis
    inputs: list[str] = field(default_factory=list)  # the user's files and folders it reads: no report replaces them
