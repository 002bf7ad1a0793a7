"""Hugging Face image classifiers: a local folder with `config.json` and `model.safetensors` (the `hf` extra).

The model is built by transformers' `AutoModelForImageClassification` from the
classes the library itself holds: never with `trust_remote_code` (a folder's own
Python would run), never from the hub (offline, local files only), and only from
safetensors weights (no pickle). Its class scores are the output's `logits`
(`engine.saliency.select_output` takes them from the output by that name).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .errors import LoadError, one_line
from .extras import require

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


@dataclass
class HfModel:
    """A folder's model, its preprocessing as a `preprocess.json` holds it (None: not given), and its classes."""

    model: nn.Module
    preprocess: dict | None
    class_names: list[str] | None
    notes: list[str] = field(default_factory=list)


def is_model_folder(path: Path) -> bool:
    """Whether `path` is a folder that holds a Hugging Face model's config."""
    return path.is_dir() and (path / CONFIG).is_file()


def load(folder: Path) -> HfModel:
    """The image classifier saved in `folder`, built offline from its config and safetensors weights."""
    if not any((folder / name).is_file() for name in WEIGHTS):
        raise LoadError(f"{folder} holds no {WEIGHTS[0]}; semiotui reads a Hugging Face model's weights only from "
                        "safetensors (a pytorch_model.bin is a pickle): save it with save_pretrained(folder)")
    os.environ["HF_HUB_OFFLINE"] = "1"  # huggingface_hub reads it on import (timm may have done so): local_files_only too
    transformers = require("transformers", "hf", f"{folder.name}, a Hugging Face model folder,")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # its progress bars and advice would break the one-line output
    transformers.logging.disable_progress_bar()
    try:
        model = transformers.AutoModelForImageClassification.from_pretrained(
            folder, local_files_only=True, trust_remote_code=False, use_safetensors=True)
    except Exception as exc:  # an unknown model type, code the folder asks to run, damaged weights
        raise LoadError(f"{folder} could not be opened as a transformers image classifier ({one_line(exc, short=True)}); "
                        "semiotui opens the library's own image-classification models, never a folder's code") \
            from exc
    finally:
        transformers.logging.enable_progress_bar()
        transformers.logging.set_verbosity(verbosity)
    names = _class_names(model.config.id2label)
    notes = [f"class names from {CONFIG}'s id2label"] if names else []
    preprocess = _preprocess(folder / PREPROCESSOR)
    notes.append(f"input size, mean and std from {PREPROCESSOR}" if preprocess else
                 f"{folder.name} has no {PREPROCESSOR}: using 224x224 and ImageNet's mean and std")
    return HfModel(model, preprocess, names, notes)


def _class_names(id2label: dict) -> list[str] | None:
    """The labels in class order; None where they are transformers' placeholders (LABEL_0, ...)."""
    labels = [id2label.get(i, id2label.get(str(i))) for i in range(len(id2label))]
    if not all(isinstance(label, str) for label in labels) or labels == [f"LABEL_{i}" for i in range(len(labels))]:
        return None
    return labels


def _preprocess(path: Path) -> dict | None:
    """The input size, mean and std an image processor's config gives, as a preprocess.json holds them."""
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoadError(f"{path} is not valid JSON ({one_line(exc, short=True)}); fix or remove it") from exc
    if not isinstance(config, dict):
        raise LoadError(f"{path} is not a JSON object; fix or remove it")
    size = config.get("crop_size") if config.get("do_center_crop") else config.get("size")
    if isinstance(size, dict):
        size = [size["shortest_edge"]] * 2 if "shortest_edge" in size else [size.get("height"), size.get("width")]
    elif isinstance(size, int):
        size = [size, size]
    mean, std = config.get("image_mean"), config.get("image_std")
    if config.get("do_normalize") is False:
        mean, std = [0.0] * len(mean or [0, 0, 0]), [1.0] * len(std or [0, 0, 0])
    return {"input_size": size, "mean": mean, "std": std}
