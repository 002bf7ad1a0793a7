"""`semiotui prune`: greedy pruning from the command line, with progress and a safe Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from semiotui.engine.data import ImageSource
from semiotui.engine.greedy import (PruneEvent, PruneFinished, PruneLog, PruneSettings, StepDone, Trying, Working, scored_by,
                                   greedy_prune)
from semiotui.engine.workspace import Workspace

from .cli import Interrupts
from .workspace_args import input_paths, workspace_from_args

DEMO_TRAIN_IMAGES = 1024
DEMO_HELD_OUT = 300  # the validation images `semiotui demo --export` writes


def prune(args: argparse.Namespace) -> int:
    out = Path(args.out)
    log_path = check_output(out, input_paths(args), force=args.force)
    settings = PruneSettings(
        criterion=args.criterion, fraction=args.fraction, tolerance=args.tolerance,
        target_params=args.target_params, target_macs=args.target_macs, max_steps=args.max_steps,
        finetune_batches=args.finetune_batches,
    )
    settings.check()
    workspace = workspace_from_args(args)
    for warning in workspace.warnings:
        print(f"semiotui: warning: {warning}", file=sys.stderr)
    train, held_out = prune_splits(workspace, args.holdout, args.seed)
    layers = conv_layers(workspace, workspace.layers if args.layers else None)
    measure = scored_by(held_out)
    print(f"semiotui: pruning {len(layers)} conv layers ({args.criterion}); {len(train)} images to fine-tune "
          f"and calibrate, {len(held_out)} to measure {measure}"
          f"{' (no labels: agreement with the original model)' if measure == 'agreement' else ''}; "
          "Ctrl-C stops after the current step", file=sys.stderr)
    cancel = threading.Event()
    with Interrupts(cancel):
        events = greedy_prune(workspace.model, train, held_out, layers, settings, workspace.settings, cancel=cancel)
        finished = _follow(events, settings, cancel)
    save_pruned(finished.model, finished.log, workspace, out)
    for warning in finished.log.warnings:
        print(f"semiotui: warning: {warning}", file=sys.stderr)
    o, f = finished.log.original, finished.log.final
    print(f"semiotui: {finished.log.stopped_because}; parameters {f.parameters:,} of {o.parameters:,} "
          f"({f.parameters / o.parameters:.1%}), MACs {f.macs / o.macs:.1%}, {measure} {o.accuracy:.1%} -> "
          f"{f.accuracy:.1%}; saved {out} and {log_path}", file=sys.stderr)
    return 0


def check_output(out: Path, inputs: Sequence[str | Path], *, force: bool = False) -> Path:
    """The log's path beside `out`; never an input or inside an input folder, earlier outputs only with `force`."""
    log_path = out.with_suffix(".json")
    for path in (out, log_path):
        where = path.resolve()
        for given in inputs:
            source = Path(given).expanduser().resolve()
            if where == source:
                raise ValueError(f"{path} would overwrite the input {given}; choose another name")
            if where.is_relative_to(source):
                raise ValueError(f"{path} would be written into the input folder {given}; choose another folder")
    if out.suffix != ".pt":
        raise ValueError(f"{out}: the pruned model is saved as a .pt file, e.g. pruned.pt")
    for path in (out, log_path):
        if path.exists() and not force:
            raise FileExistsError(f"{path} already exists; choose another name or pass --force")
    if not out.absolute().parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: the folder {out.absolute().parent} does not exist")
    return log_path


def prune_splits(workspace: Workspace, holdout: float = 0.5, seed: int = 0) -> tuple[ImageSource, ImageSource]:
    """Images to fine-tune and calibrate on, and images to measure accuracy on.

    The demo has its own training split and measures on the validation images
    `semiotui demo --export` writes; other images are shuffled with `seed` and
    `holdout` of them kept aside.
    """
    if workspace.info.format == "demo":
        from semiotui.engine import demo

        def source(split: str, count: int) -> ImageSource:
            samples = demo.demo_samples(split, count)
            return ImageSource.from_images([img for img, _ in samples], workspace.spec,
                                           labels=[label for _, label in samples], class_names=demo.CLASSES)

        return source("train", DEMO_TRAIN_IMAGES), source("val", DEMO_HELD_OUT)
    if not 0 < holdout < 1:
        raise ValueError(f"--holdout must be between 0 and 1, got {holdout}")
    images = workspace.images
    order = list(range(len(images)))
    random.Random(seed).shuffle(order)
    cut = round(len(order) * holdout)
    if cut < 1 or cut >= len(order):
        raise ValueError(f"{len(order)} images are too few to split into training and held-out parts")
    return images.subset(sorted(order[cut:])), images.subset(sorted(order[:cut]))


def conv_layers(workspace: Workspace, names: list[str] | None = None) -> list[str]:
    """The convolutions with a spatial output among `names` (default: every layer): what pruning measures and cuts."""
    chosen = names if names is not None else [info.name for info in workspace.index]
    return [n for n in chosen if workspace.index[n].type == "Conv2d" and workspace.index[n].spatial]


def _follow(events: Iterator[PruneEvent], settings: PruneSettings, cancel: threading.Event) -> PruneFinished:
    """Show the run on stderr: a line per step, and on a terminal a Rich bar toward the target with what runs now."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    target = settings.target_params if settings.target_params is not None else settings.target_macs
    measure = "parameters" if settings.target_params is not None else "macs"
    # The description names a layer: plain text, not Rich markup.
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                   TextColumn("{task.fields[size]}"), TimeElapsedColumn(), console=console, transient=True,
                   disable=not console.is_terminal)
    # The bar fills as the model shrinks from its size to the target (or pulses with no target).
    task = bar.add_task("measuring the original model", total=None if target is None else 1 - target, size="")
    layer = ""
    stopping = False
    with bar:
        for event in events:
            if cancel.is_set() and not stopping:
                stopping = True
                print("semiotui: stopping after the current step (Ctrl-C again to abort without saving)",
                      file=sys.stderr)
            if isinstance(event, Trying):
                layer = event.layer
                bar.update(task, description=f"step {event.step}: {layer}")
                if not console.is_terminal:
                    print(f"step {event.step}: trying {layer}", file=sys.stderr)
            elif isinstance(event, Working):
                bar.update(task, description=f"step {event.step}: {layer}, {event.what}")
            elif isinstance(event, StepDone):
                _print_step(event)
                kept = next((s for s in reversed(event.log.steps) if s.accepted), None)
                if kept is not None:
                    original = event.log.original
                    left = getattr(kept, measure) / getattr(original, measure)
                    bar.update(task, completed=1 - left,
                               size=f"{measure} {left:.1%} · accuracy {kept.accuracy:.1%}")
            elif isinstance(event, PruneFinished):
                return event
    raise RuntimeError("the pruning ended without a result")  # greedy_prune always finishes with one


def _print_step(event: StepDone) -> None:
    s, original = event.step, event.log.original
    verdict = "accepted" if s.accepted else "rolled back; layer saturated"
    print(f"step {s.index}: {s.layer} -{s.channels_removed} channels ({s.channels_left} left), parameters "
          f"{s.parameters / original.parameters:.1%}, accuracy {s.accuracy:.1%} ({verdict})", file=sys.stderr)


def save_pruned(model: torch.nn.Module, log: PruneLog, workspace: Workspace, out: Path) -> Path:
    """Save `model` as a full module at `out` and its log, with the preprocessing, beside it; returns the log's path.

    Both are written under temporary names and then renamed into place; the
    caller checks the names first (`check_output`).
    """
    log_path = out.with_suffix(".json")
    data = log.to_dict()
    data["preprocess"] = {"input_size": list(workspace.spec.size), "mean": list(workspace.spec.mean),
                          "std": list(workspace.spec.std)}
    data["model"] = {"path": workspace.info.path, "format": workspace.info.format, "arch": workspace.info.arch}
    data["class_names"] = workspace.class_names
    tmp_model, tmp_log = out.with_name(f".{out.name}.tmp"), log_path.with_name(f".{log_path.name}.tmp")
    device = next(model.parameters()).device
    try:
        torch.save(model.cpu(), tmp_model)
        tmp_log.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_model, out)
        os.replace(tmp_log, log_path)
    finally:
        model.to(device)
        for tmp in (tmp_model, tmp_log):
            tmp.unlink(missing_ok=True)
    return log_path
