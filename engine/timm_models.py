"""`--arch timm:NAME`: a timm architecture, built without downloading anything, and its preprocessing.

timm (an optional extra) knows a model's input size, mean and std from its
pretrained config, which comes with the library: `pretrained=False` reads no
weights and reaches no network.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from torch import nn

from .errors import LoadError
from .extras import require
from .workspace import InputSpec

PREFIX = "timm:"


def factory(name: str) -> Callable[..., nn.Module]:
    """What builds timm's model `name` with no weights (a tag, as in resnet18.a1_in1k, picks its pretrained config)."""
    timm = require("timm", "timm", f"`arch` {PREFIX}{name}")
    if not timm.is_model(name):  # also refuses hf-hub: and local-dir: names, which would read the hub or a folder
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
        raise LoadError(f"`arch` {PREFIX}{name} is not a timm model name; {hint}")
    return lambda **kwargs: timm.create_model(name, pretrained=False, **kwargs)


def input_spec(model: nn.Module) -> tuple[InputSpec, str]:
    """The input size, mean and std of timm's pretrained config for `model`, and how that is said."""
    from timm.data import resolve_model_data_config

    config = resolve_model_data_config(model)
    _, h, w = config["input_size"]
    spec = InputSpec((int(h), int(w)), tuple(map(float, config["mean"])), tuple(map(float, config["std"])))
    said = f"input size {h}x{w}, mean and std from timm's pretrained config"
    if config.get("interpolation") not in (None, "bilinear"):  # semiotui's one resampling (engine.data.fit)
        said += f" (it resizes with {config['interpolation']}; semiotui resizes bilinearly)"
    return spec, said
