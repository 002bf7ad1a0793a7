"""`semiotui prune`: greedy pruning from the command line, with progress and a safe Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
from pathlib import Path

import torch

from semiotui.engine.data import ImageSource
from semiotui.engine.greedy import PruneFinished, PruneSettings, StepDone, Trying, greedy_prune
from semiotui.engine.workspace import Workspace

from .workspace_args import workspace_from_args

DEMO_TRAIN_IMAGES = 1024
DEMO_HELD_OUT = 300  # the validation images `semiotui demo --export` writes


def prune(args: argparse.Namespace) -> int:
    out = Path(args.out)
    log_path = out.with_suffix(".json")
    _check_output(args, out, log_path)
    settings = PruneSettings(
        criterion=args.criterion, fraction=args.fraction, tolerance=args.tolerance,
        target_params=args.target_params, target_macs=args.target_macs, max_steps=args.max_steps,
        finetune_batches=args.finetune_batches,
    )
    settings.check()
    workspace = workspace_from_args(args)
    for warning in workspace.warnings:
        print(f"semiotui: warning: {warning}", file=sys.stderr)
    train, held_out = _splits(args, workspace)
    chosen = workspace.layers if args.layers else [info.name for info in workspace.index]
    layers = [n for n in chosen if workspace.index[n].type == "Conv2d" and workspace.index[n].spatial]
    print(f"semiotui: pruning {len(layers)} conv layers ({args.criterion}); {len(train)} images to fine-tune "
          f"and calibrate, {len(held_out)} to measure accuracy; Ctrl-C stops after the current step",
          file=sys.stderr)
    cancel = threading.Event()
    previous = signal.signal(signal.SIGINT, _first_interrupt_stops(cancel))
    try:
        for event in greedy_prune(workspace.model, train, held_out, layers, settings, workspace.settings,
                                  cancel=cancel):
            if isinstance(event, Trying):
                print(f"step {event.step}: trying {event.layer}", file=sys.stderr)
            elif isinstance(event, StepDone):
                _print_step(event)
            elif isinstance(event, PruneFinished):
                finished = event
    finally:
        signal.signal(signal.SIGINT, previous)
    log = finished.log.to_dict()
    log["preprocess"] = {"input_size": list(workspace.spec.size), "mean": list(workspace.spec.mean),
                         "std": list(workspace.spec.std)}
    log["model"] = {"path": workspace.info.path, "format": workspace.info.format, "arch": workspace.info.arch}
    log["class_names"] = workspace.class_names
    _save(finished.model.cpu(), log, out, log_path)
    o, f = finished.log.original, finished.log.final
    print(f"semiotui: {finished.log.stopped_because}; parameters {f.parameters:,} of {o.parameters:,} "
          f"({f.parameters / o.parameters:.1%}), MACs {f.macs / o.macs:.1%}, accuracy {o.accuracy:.1%} -> "
          f"{f.accuracy:.1%}; saved {out} and {log_path}", file=sys.stderr)
    return 0


def _check_output(args: argparse.Namespace, out: Path, log_path: Path) -> None:
    """Never write over the input model; replace earlier outputs only with --force."""
    if args.model is not None and Path(args.model).resolve() in (out.resolve(), log_path.resolve()):
        raise ValueError(f"-o {out} would overwrite the input model; choose another name")
    if out.suffix != ".pt":
        raise ValueError(f"-o {out}: the pruned model is saved as a .pt file, e.g. -o pruned.pt")
    for path in (out, log_path):
        if path.exists() and not args.force:
            raise FileExistsError(f"{path} already exists; choose another name or pass --force")
    if not out.absolute().parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: the folder {out.absolute().parent} does not exist")


def _splits(args: argparse.Namespace, workspace: Workspace) -> tuple[ImageSource, ImageSource]:
    """Images to fine-tune and calibrate on, and images to measure accuracy on."""
    if args.model is None and not (args.images or args.dataset):
        from semiotui.engine import demo

        def source(split: str, count: int) -> ImageSource:
            samples = demo.demo_samples(split, count)
            return ImageSource.from_images([img for img, _ in samples], workspace.spec,
                                           labels=[label for _, label in samples], class_names=demo.CLASSES)

        return source("train", DEMO_TRAIN_IMAGES), source("val", DEMO_HELD_OUT)
    if not 0 < args.holdout < 1:
        raise ValueError(f"--holdout must be between 0 and 1, got {args.holdout}")
    images = workspace.images
    order = list(range(len(images)))
    random.Random(args.seed).shuffle(order)
    cut = round(len(order) * args.holdout)
    if cut < 1 or cut >= len(order):
        raise ValueError(f"{len(order)} images are too few to split into training and held-out parts")
    return images.subset(sorted(order[cut:])), images.subset(sorted(order[:cut]))


def _first_interrupt_stops(cancel: threading.Event):
    def handler(signum, frame):
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("semiotui: stopping after the current step (Ctrl-C again to abort without saving)", file=sys.stderr)

    return handler


def _print_step(event: StepDone) -> None:
    s, original = event.step, event.log.original
    verdict = "accepted" if s.accepted else "rolled back; layer saturated"
    print(f"step {s.index}: {s.layer} -{s.channels_removed} channels ({s.channels_left} left), parameters "
          f"{s.parameters / original.parameters:.1%}, accuracy {s.accuracy:.1%} ({verdict})", file=sys.stderr)


def _save(model: torch.nn.Module, log: dict, out: Path, log_path: Path) -> None:
    """Write both files under temporary names, then rename them into place."""
    tmp_model, tmp_log = out.with_name(f".{out.name}.tmp"), log_path.with_name(f".{log_path.name}.tmp")
    try:
        torch.save(model, tmp_model)
        tmp_log.write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_model, out)
        os.replace(tmp_log, log_path)
    finally:
        for tmp in (tmp_model, tmp_log):
            tmp.unlink(missing_ok=True)
