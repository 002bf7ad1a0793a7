"""What the interface and the reports work on: a loaded model, its layers, images and settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .analysis import AnalysisResult, AnalysisSettings
from .control import ControlSettings
from .layers import LayerIndex


@dataclass(frozen=True)
class InputSpec:
    """How images are prepared for the model."""

    size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]


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
    images: object  # engine.data.ImageSource
    settings: AnalysisSettings
    class_names: list[str] | None = None
    warnings: list[str] = field(default_factory=list)
    result: AnalysisResult | None = None
    origin: str | None = None  # a saved report's folder and date; None for a loaded model
    control: ControlSettings | None = ControlSettings()  # None: no control analysis
    inputs: list[str] = field(default_factory=list)  # the user's files and folders it reads: no report replaces them
