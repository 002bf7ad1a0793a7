"""The computation behind semiotui: saliency of every layer, spatial entropy, superization.

A library with no terminal code; the interface and the reports sit on top of it.
"""

from .analysis import (
    AnalysisResult,
    AnalysisSettings,
    Batch,
    BatchDone,
    Finished,
    ImageResult,
    Notice,
    analyse,
    stream_analysis,
)
from .control import ControlResult, ControlSettings, control_analysis, control_rows, stream_control
# The events and settings the interface handles, so that it needs no module behind the session.
from .control import ControlFinished, ControlProgress
from .analysis import TargetSetting
# What the command line prints of the engine's work, so that it needs no module behind the session.
from .analysis import skipped_message
from .greedy import scored_by
from .greedy import CRITERIA, Measure, PruneFinished, PruneLog, PruneSettings, Step, StepDone, Trying, Working
from .device import describe_device, resolve_device
from .entropy import ESTIMATORS, spatial_entropy
from .errors import SemiotuiError
from .flow import Flow
from .hooks import ActivationCapture
from .layers import LayerIndex, LayerInfo, index_layers
from .opening import open_workspace
from .saliency import METHODS, compute_saliency, layer_saliency
from .stats import RunningStats
from .superization import SpanTest, Superization, format_p, holm, summary, superization
from .workspace import ImageSet, Workspace

__all__ = [
    "ActivationCapture",
    "AnalysisResult",
    "AnalysisSettings",
    "Batch",
    "BatchDone",
    "ControlResult",
    "ControlSettings",
    "ESTIMATORS",
    "Finished",
    "Flow",
    "ImageSet",
    "ImageResult",
    "LayerIndex",
    "LayerInfo",
    "METHODS",
    "Notice",
    "RunningStats",
    "SemiotuiError",
    "SpanTest",
    "Superization",
    "Workspace",
    "analyse",
    "compute_saliency",
    "control_analysis",
    "control_rows",
    "describe_device",
    "format_p",
    "holm",
    "index_layers",
    "layer_saliency",
    "open_workspace",
    "resolve_device",
    "spatial_entropy",
    "stream_analysis",
    "stream_control",
    "summary",
    "superization",
    "CRITERIA",
    "ControlFinished",
    "ControlProgress",
    "Measure",
    "PruneFinished",
    "PruneLog",
    "PruneSettings",
    "Step",
    "StepDone",
    "TargetSetting",
    "Trying",
    "Working",
    "skipped_message",
    "scored_by",
]
