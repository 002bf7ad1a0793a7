"""The optional libraries some model formats need (timm, onnx2torch, transformers), each named with the
`semiotui[extra]` that installs it when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import LoadError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or a LoadError saying which extra installs it; `purpose` is what needs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise LoadError(
            f"{purpose} needs the optional package {module.partition('.')[0]}, which is not installed; "
            f"install it with: pip install 'semiotui[{extra}]'"
        ) from exc
