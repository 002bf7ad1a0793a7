"""The bodies of the command-line commands, wired into the parsers of `cli`.

A thin front end, as the interface is: every job runs on the engine's session (`engine.session`), followed here
in the main thread (`job_events`, `run_to_end`) with progress on stderr. The engine is imported inside the
functions that run a command, so that the interface paints its first frame before PyTorch is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from semiotui.engine.errors import BatchFailed, InvalidValue

from .errors import flags_in, for_command_line
from .interrupts import Interrupts
from . import plain
from .plain import say

if TYPE_CHECKING:
    from semiotui.engine import AnalysisResult, ControlResult, ImageSet, Workspace
    from semiotui.engine.session import Session


def run_interface(args: argparse.Namespace) -> int:
    from .app import run_app

    def open_workspace() -> Workspace:
        from .workspace_args import workspace_from_args

        return workspace_from_args(args)  # in the app's thread, behind its first frame; bad input ends the app

    return run_app(open_workspace, debug=args.debug)


def run_open(args: argparse.Namespace) -> int:
    from .app import run_app

    def open_workspace() -> Workspace:
        from semiotui.engine.saved import open_report

        return open_report(args.directory)  # a missing or damaged folder ends the app with its one line

    return run_app(open_workspace, debug=args.debug)


def run_demo(args: argparse.Namespace) -> int:
    from semiotui.engine.demo import export_demo

    export_demo(args.export)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from semiotui.engine import distributed
    from semiotui.engine.explain import label_order_warning, showcase
    from semiotui.engine.reports.content import terminal_summary
    from semiotui.engine.reports.write import write_report
    from semiotui.engine.report_folder import claim_report_folder
    from semiotui.engine.session import MapsAdded, job_events
    from semiotui.engine.streams import run_to_end

    from .workspace_args import input_paths

    if args.maps < 0:
        raise InvalidValue(f"--maps must be 0 or more, got {args.maps}")
    shard = distributed.current_shard()
    # Checked and claimed before the analysis, which may take hours; held until the report is in place.
    leader = shard is None or shard.leader
    claim = claim_report_folder(args.out, force=args.force, inputs=input_paths(args)) if leader else None
    cancel = threading.Event()
    with claim or contextlib.nullcontext(), Interrupts(cancel) as interrupts:
        analysed = _analyse_for_report(args, shard, cancel)
        if analysed is None:  # a rank other than 0: rank 0 writes the report
            return interrupts.status
        session, result = analysed
        with session:
            workspace = session.workspace
            if result.failed is not None:  # said now; the report of the images analysed before it follows
                say(f"semiotui: error: {result.failed}", always=True)
            if result.cancelled and not result.images:
                say("semiotui: interrupted before the first images were analysed; no report written")
                return interrupts.status
            order = label_order_warning(result, workspace.images.label_source, workspace.images.class_names)
            if order:
                say(f"semiotui: warning: {order}", always=True)
            if result.failed is None:  # a model that failed is not run again: the report is written as it stands
                if workspace.control is not None and result.images and not cancel.is_set():
                    control_with_progress(session, result, cancel)  # attaches the control to the result
                layers = workspace.layers
                run_to_end(job_events(session.add_maps, result, showcase(result, args.maps), layers), MapsAdded)
                run_to_end(job_events(session.add_contrast_maps, result, layers), MapsAdded)
            path = write_report(claim, workspace, result, formats=tuple(args.formats))
    sentences, warnings = terminal_summary(workspace, result)
    for line in sentences:
        say(f"semiotui: {line}")
    for warning in warnings:
        if warning != order:  # said before the control ran
            say(f"semiotui: warning: {flags_in(warning)}", always=True)
    why = {"cancelled": "the analysis was interrupted", "failed": "the analysis failed"}.get(result.partial)
    say(f"semiotui: report written to {path}{f' (partial: {why})' if why else ''}")
    return 1 if result.failed is not None else interrupts.status


def _analyse_for_report(args: argparse.Namespace, shard,
                        cancel: threading.Event) -> tuple[Session, AnalysisResult] | None:
    """The workspace's session and its analysis; under torchrun, the gathered whole on rank 0 and None elsewhere.

    The session is the caller's to close.
    """
    from semiotui.engine import distributed
    from semiotui.engine.session import open_session

    from .workspace_args import workspace_from_args

    if shard is not None:
        args.device = distributed.start(shard, args.device)
    try:
        session = open_session(workspace_from_args(args))
        try:
            if shard is None or shard.leader:
                for warning in session.workspace.warnings:
                    say(f"semiotui: warning: {flags_in(warning)}", always=True)
            if shard is None:
                try:
                    result = analyse_with_progress(session, cancel=cancel)  # maps come after: across the classes
                except BatchFailed as exc:
                    if not exc.result.images:
                        raise
                    result = exc.result  # the images analysed before the failure are reported, marked partial
            else:
                result = _analyse_shard(session, shard, cancel)
        except BaseException:
            session.close(0)  # a job may still be under way (a second Ctrl-C): not waited for
            raise
    finally:
        if shard is not None:
            distributed.stop()
    if result is None:
        session.close()
        return None
    return session, result


def _analyse_shard(session: Session, shard, cancel: threading.Event) -> AnalysisResult | None:
    """This rank's block of the images; on rank 0 the gathered whole, elsewhere None."""
    from semiotui.engine import distributed, skipped_message

    images = session.workspace.images
    block = shard.indices(len(images))
    part, error = None, None
    try:
        part = analyse_with_progress(
            session, images=images.subset(block), first_index=block.start, quiet=not shard.leader, cancel=cancel,
        )
    except Exception as exc:  # every rank must reach the gather, which reports the failure
        error = for_command_line(exc)
    try:
        whole = distributed.gather(shard, part, error)
    except RuntimeError:
        if shard.leader:
            raise
        raise SystemExit(1) from None  # rank 0 says what failed
    if whole is not None:  # rank 0 named the files it skipped; the other ranks' it names now
        others = [entry for entry in whole.skipped if entry not in part.skipped]
        if others:
            say(f"semiotui: {skipped_message(others)}")
    return whole


def analyse_with_progress(
    session: Session,
    *,
    images: ImageSet | None = None,
    first_index: int = 0,
    quiet: bool = False,
    cancel: threading.Event | None = None,
) -> AnalysisResult:
    """The analysis of the session's images (or of `images`, a part of them), with progress on stderr.

    A Rich bar on a terminal, else plain lines; nothing when `quiet`. Setting
    `cancel` (`Interrupts` does on Ctrl-C) stops after the current batch and
    keeps what was finished. The control is left to `control_with_progress`.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from semiotui.engine import BatchDone, Finished, Notice
    from semiotui.engine.session import job_events
    from semiotui.engine.streams import run_to_end

    quiet = quiet or plain.quiet()
    workspace = session.workspace
    images = workspace.images if images is None else images
    total = len(images)
    console = Console(stderr=True, quiet=quiet)
    bar = Progress(TextColumn("analysing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                   TimeRemainingColumn(), console=console, disable=quiet or not console.is_terminal)
    task = bar.add_task("", total=total, rate="")
    last_line = 0

    def show(event: object) -> None:
        nonlocal last_line, total
        if isinstance(event, Notice):
            if not quiet:
                say(f"semiotui: {event.message}")
        elif isinstance(event, BatchDone):
            total = event.total if event.total is not None else total  # less the files found unreadable
            bar.update(task, completed=event.done, total=total, rate=f"{event.rate:.1f} images/s")
            if not (quiet or console.is_terminal) and (event.done - last_line >= max(1, total // 10)
                                                        or event.done == total):
                say(f"analysed {event.done}/{total} images ({event.rate:.1f}/s)")
                last_line = event.done

    with bar:
        events = job_events(session.analyse, workspace.settings, workspace.layers, keep_maps=0, images=images,
                            first_index=first_index, control=False, cancel=cancel)
        result = run_to_end(events, Finished, show).result
    if result.cancelled and result.images and not quiet:
        say(f"semiotui: analysis stopped after {len(result.images)} of {total} images; "
            "the report covers those (Ctrl-C again stops without one)")
    return result


def control_with_progress(session: Session, result: AnalysisResult,
                          cancel: threading.Event | None = None) -> ControlResult | None:
    """The control analysis of `result` on the session, attached to it, with progress on stderr.

    Setting `cancel` (`Interrupts` does on Ctrl-C) stops after the current control network and keeps those done.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from semiotui.engine import ControlFinished, ControlProgress, Notice
    from semiotui.engine.session import Preparing, job_events
    from semiotui.engine.streams import run_to_end

    console = Console(stderr=True, quiet=plain.quiet())
    bar = Progress(TextColumn("control"), BarColumn(), MofNCompleteColumn(), console=console,
                   disable=plain.quiet() or not console.is_terminal)
    task = bar.add_task("", total=session.workspace.control.draws)

    def show(event: object) -> None:
        if isinstance(event, Preparing):
            say(f"semiotui: {event.text} (--no-control skips it)")
        elif isinstance(event, Notice):
            say(f"semiotui: {event.message}")
        elif isinstance(event, ControlProgress):
            bar.update(task, completed=event.done)
            if not console.is_terminal:
                say(f"control network {event.done}/{event.draws} done")

    with bar:
        done = run_to_end(job_events(session.control, result, cancel=cancel), ControlFinished, show).control
    if done is None:
        say("semiotui: warning: no control; no step is called superization", always=True)
    return done


def run_compare(args: argparse.Namespace) -> int:
    """Two models (or two saved reports) on the same images: the comparison report, and its summary on stderr."""
    from semiotui.engine.comparison import compare
    from semiotui.engine.reports.comparison import write_comparison
    from semiotui.engine.explain import showcase
    from semiotui.engine.report_folder import claim_report_folder
    from semiotui.engine.saved import open_report
    from semiotui.engine.session import MapsAdded, job_events
    from semiotui.engine.streams import run_to_end

    from .workspace_args import input_paths

    folders = [Path(x).is_dir() for x in (args.a, args.b)]
    if any(folders) and not all(folders):
        raise ValueError("compare two model files or two report folders, not one of each")
    inputs = [*input_paths(args), args.a, args.b]
    with claim_report_folder(args.out, force=args.force, inputs=inputs) as claim:
        if all(folders):
            sides = [open_report(x) for x in (args.a, args.b)]
            sides = [(workspace, workspace.result) for workspace in sides]
        else:
            with contextlib.ExitStack() as sessions:
                analysed = [_analysed_side(args, model, sessions) for model in (args.a, args.b)]
                shown = {analysed[0][1].images[k].name for k in showcase(analysed[0][1], 4)}
                for session, result in analysed:  # the same images' maps under both models
                    rows = [k for k, row in enumerate(result.images) if row.name in shown]
                    run_to_end(job_events(session.add_maps, result, rows, session.workspace.layers), MapsAdded)
            sides = [(session.workspace, result) for session, result in analysed]
        names = tuple(Path(x).name if x != "demo" else "bundled demo" for x in (args.a, args.b))
        comparison = compare(sides[0][1], sides[1][1], names, tuple(w.info.parameters for w, _ in sides),
                             specs=(sides[0][0].spec, sides[1][0].spec), force=args.force)
        path = write_comparison(claim, comparison, *sides)
    for line in comparison.summary():
        say(f"semiotui: {line}")
    say(f"semiotui: comparison written to {path}")
    return 0


def _analysed_side(args: argparse.Namespace, model: str,
                   sessions: contextlib.ExitStack) -> tuple[Session, AnalysisResult]:
    """One model of a comparison: loaded with the shared options, analysed, with its control; its session is
    closed with `sessions`."""
    from semiotui.engine.session import open_session

    from .workspace_args import workspace_from_args

    say(f"semiotui: {model}")
    demo = {"model": None, "arch": None} if model == "demo" else {"model": model}  # --arch is the other model's
    workspace = workspace_from_args(argparse.Namespace(**{**vars(args), **demo}))
    for warning in workspace.warnings:
        say(f"semiotui: warning: {flags_in(warning)}", always=True)
    session = sessions.enter_context(open_session(workspace))
    result = analyse_with_progress(session)
    if workspace.control is not None:
        control_with_progress(session, result)
    return session, result


def run_prune(args: argparse.Namespace) -> int:
    from .prune_command import prune

    return prune(args)
