"""The computation behind semiotui: saliency of every layer, spatial entropy, superization.

A library with no terminal code; the interface and the reports sit on top of it.

A lazy façade: each public name is imported from its module when it is first used, so that importing the
package (as `semiotui --help` does, for `engine.names`) costs nothing and PyTorch is imported only when needed.
"""

from __future__ import annotations

import importlib
import sys
import types

# Each public name and the module that holds it, one line per name.
FACADE = {
    "ActivationCapture": "hooks",
    "AnalysisResult": "analysis",
    "AnalysisSettings": "analysis",
    "Batch": "analysis",
    "BatchDone": "analysis",
    "CRITERIA": "greedy",
    "ControlFinished": "control",
    "ControlProgress": "control",
    "ControlResult": "control",
    "ControlSettings": "control",
    "ESTIMATORS": "entropy",
    "Finished": "analysis",
    "Flow": "flow",
    "ImageResult": "analysis",
    "ImageSet": "workspace",
    "LayerIndex": "layers",
    "LayerInfo": "layers",
    "METHODS": "saliency",
    "Measure": "greedy",
    "Notice": "analysis",
    "PruneFinished": "greedy",
    "PruneLog": "greedy",
    "PruneSettings": "greedy",
    "RunningStats": "stats",
    "SemiotuiError": "errors",
    "SpanTest": "superization",
    "Step": "greedy",
    "StepDone": "greedy",
    "Superization": "superization",
    "TargetSetting": "analysis",
    "Trying": "greedy",
    "Working": "greedy",
    "Workspace": "workspace",
    "analyse": "analysis",
    "compute_saliency": "saliency",
    "control_analysis": "control",
    "control_rows": "control",
    "describe_device": "device",
    "format_p": "superization",
    "holm": "superization",
    "index_layers": "layers",
    "layer_saliency": "saliency",
    "open_workspace": "opening",
    "resolve_device": "device",
    "scored_by": "greedy",
    "skipped_message": "analysis",
    "spatial_entropy": "entropy",
    "stream_analysis": "analysis",
    "stream_control": "control",
    "summary": "superization",
    "superization": "superization",
}

__all__ = sorted(FACADE)


def __getattr__(name: str) -> object:
    """Import the module that holds `name` and keep what it gives (module `__getattr__`, PEP 562)."""
    if name not in FACADE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{FACADE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *FACADE})


class _Facade(types.ModuleType):
    """The package as a module whose façade names are never replaced by a submodule of the same name.

    Importing `engine.superization` (the module) sets the package's attribute `superization`, which the façade
    gives as the function: that attribute is left to `__getattr__`.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if not (name in FACADE and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Facade
