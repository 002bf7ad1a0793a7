"""`semiotui prune`: greedy pruning on the engine's session, from the command line, with progress and a safe Ctrl-C."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from semiotui.engine import PruneFinished, PruneSettings, StepDone, Trying, Working, scored_by
from semiotui.engine.names import readable
from semiotui.engine.pruning import check_output, conv_layers, prune_splits, save_pruned
from semiotui.engine.session import Session, job_events, open_session
from semiotui.engine.streams import run_to_end
from semiotui.engine.workspace import ImageSet

from .interrupts import Interrupts
from . import plain
from .errors import flags_in
from .plain import say
from .workspace_args import input_paths, workspace_from_args


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
        say(f"semiotui: warning: {flags_in(warning)}", always=True)
    train, held_out = prune_splits(workspace, args.holdout, args.seed)
    layers = conv_layers(workspace, workspace.layers if args.layers else None)
    measure = scored_by(held_out)
    say(f"semiotui: pruning {len(layers)} conv layers ({args.criterion}); {len(train)} images to fine-tune "
        f"and calibrate, {len(held_out)} to measure {measure}"
        f"{' (no labels: agreement with the original model)' if measure == 'agreement' else ''}; "
        "Ctrl-C stops after the current step")
    cancel = threading.Event()
    with Interrupts(cancel) as interrupts, open_session(workspace) as session:
        finished = _prune_with_progress(session, (train, held_out, layers), settings, cancel)
    save_pruned(finished.model, finished.log, workspace, out)
    for warning in finished.log.warnings:
        say(f"semiotui: warning: {flags_in(warning)}", always=True)
    o, f = finished.log.original, finished.log.final
    say(f"semiotui: {finished.log.stopped_because}; parameters {f.parameters:,} of {o.parameters:,} "
        f"({f.parameters / o.parameters:.1%}), MACs {f.macs / o.macs:.1%}, {measure} {o.accuracy:.1%} -> "
        f"{f.accuracy:.1%}; saved {out} and {log_path}")
    return interrupts.status  # 130 or 143 once stopped by a signal, what was done saved all the same


def _prune_with_progress(session: Session, prepared: tuple[ImageSet, ImageSet, list[str]], settings: PruneSettings,
                         cancel: threading.Event) -> PruneFinished:
    """Prune on the session, showing the run on stderr: a line per step, and on a terminal a Rich bar toward the
    target with what runs now. `prepared`: the training and held-out images, and the layers."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, quiet=plain.quiet())
    target = settings.target_params if settings.target_params is not None else settings.target_macs
    measure = "parameters" if settings.target_params is not None else "macs"
    # The description names a layer: plain text, not Rich markup (and `readable`, as `say` prints).
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                   TextColumn("{task.fields[size]}"), TimeElapsedColumn(), console=console, transient=True,
                   disable=plain.quiet() or not console.is_terminal)
    # The bar fills as the model shrinks from its size to the target (or pulses with no target).
    task = bar.add_task("measuring the original model", total=None if target is None else 1 - target, size="")
    stopping = False

    def show(event: object) -> None:
        nonlocal stopping
        if cancel.is_set() and not stopping:
            stopping = True
            say("semiotui: stopping after the current step (Ctrl-C again to abort without saving)")
        if isinstance(event, (Trying, Working)):
            bar.update(task, description=readable(event.text))
            if isinstance(event, Trying) and not console.is_terminal:
                say(event.text)
        elif isinstance(event, StepDone):
            say(event.text)
            kept = next((s for s in reversed(event.log.steps) if s.accepted), None)
            if kept is not None:
                left = getattr(kept, measure) / getattr(event.log.original, measure)
                bar.update(task, completed=1 - left, size=f"{measure} {left:.1%} · accuracy {kept.accuracy:.1%}")

    with bar:
        events = job_events(session.prune, lambda: prepared, settings, session.workspace.settings, cancel=cancel)
        return run_to_end(events, PruneFinished, show)
