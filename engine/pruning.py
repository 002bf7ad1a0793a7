"""What pruning a workspace's model needs around `greedy_prune`: its layers, its images, its output files."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import torch

from . import demo
from .atomic import staged
from .errors import InvalidValue, MissingPath, PathInTheWay
from .greedy import PruneLog
from .workspace import ImageSet, Workspace


def conv_layers(workspace: Workspace, names: Sequence[str] | None = None) -> list[str]:
    """The convolutions with a spatial output among `names` (default: every layer): what pruning measures and cuts."""
    chosen = names if names is not None else [info.name for info in workspace.index]
    return [n for n in chosen if workspace.index[n].type == "Conv2d" and workspace.index[n].spatial]


def prune_splits(workspace: Workspace, holdout: float = 0.5, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Images to fine-tune and calibrate on, and images to measure accuracy on.

    The demo has its own training split and measures on the validation images
    `export_demo` writes; other images are shuffled with `seed` and `holdout` of
    them kept aside.
    """
    if workspace.info.format == "demo":
        return (demo.demo_images("train", demo.TRAIN_IMAGES, workspace.spec),
                demo.demo_images("val", demo.VAL_IMAGES, workspace.spec))
    if not 0 < holdout < 1:
        raise InvalidValue(f"`holdout` must be between 0 and 1, got {holdout}")
    images = workspace.images
    order = list(range(len(images)))
    random.Random(seed).shuffle(order)
    cut = round(len(order) * holdout)
    if cut < 1 or cut >= len(order):
        raise InvalidValue(f"{len(order)} images are too few to split into training and held-out parts")
    return images.subset(sorted(order[cut:])), images.subset(sorted(order[:cut]))


def held_out_note(workspace: Workspace, held_out: ImageSet) -> str:
    """The images `prune_splits` measures accuracy on, and why their count is not the explorer's."""
    shown = len(workspace.images)
    if workspace.info.format == "demo":
        return (f"{len(held_out)} held-out images (the demo's validation set, of which the explorer shows {shown}; "
                "its training set fine-tunes and calibrates)")
    return (f"{len(held_out)} held-out images (of the explorer's {shown}; the other {shown - len(held_out)} "
            "fine-tune and calibrate)")


def check_output(out: Path, inputs: Sequence[str | Path], *, force: bool = False) -> Path:
    """The log's path beside `out`; never an input or inside an input folder, earlier outputs only with `force`."""
    log_path = out.with_suffix(".json")
    for path in (out, log_path):
        where = path.resolve()
        for given in inputs:
            source = Path(given).expanduser().resolve()
            if where == source:
                raise InvalidValue(f"{path} would overwrite the input {given}; choose another name")
            if where.is_relative_to(source):
                raise InvalidValue(f"{path} would be written into the input folder {given}; choose another folder")
    if out.suffix != ".pt":
        raise InvalidValue(f"{out}: the pruned model is saved as a .pt file, e.g. pruned.pt")
    for path in (out, log_path):
        if path.exists() and not force:
            raise PathInTheWay(f"{path} already exists; choose another name or pass `force`")
    if not out.absolute().parent.is_dir():
        raise MissingPath(f"cannot write {out}: the folder {out.absolute().parent} does not exist")
    return log_path


def save_pruned(model: torch.nn.Module, log: PruneLog, workspace: Workspace, out: Path) -> Path:
    """Save `model` as a full module at `out` and its log, with the preprocessing, beside it; returns the log's path.

    Both are written whole (`staged`); the caller checks the names first (`check_output`).
    """
    log_path = out.with_suffix(".json")
    data = log.to_dict()
    data["preprocess"] = {"input_size": list(workspace.spec.size), "mean": list(workspace.spec.mean),
                          "std": list(workspace.spec.std)}
    data["model"] = {"path": workspace.info.path, "format": workspace.info.format, "arch": workspace.info.arch}
    data["class_names"] = workspace.class_names
    device = next(model.parameters()).device
    try:
        with staged(log_path) as log_file, staged(out) as model_file:  # the model is renamed into place first
            torch.save(model.cpu(), model_file)
            log_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    finally:
        model.to(device)
    return log_path
