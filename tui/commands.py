"""The bodies of the command-line commands, wired into the parsers of `cli`."""

from __future__ import annotations

import argparse
from pathlib import Path
import contextlib
import threading

from semiotui.engine.analysis import AnalysisResult, BatchDone, Finished, Notice, skipped_message, stream_analysis
from semiotui.engine.errors import BatchFailed, InvalidValue
from semiotui.engine.greedy import CRITERIA
from semiotui.engine.reports import DEFAULT_MAPS, FORMATS
from semiotui.engine.workspace import ImageSet, Workspace

from .errors import flags_in, for_command_line
from .interrupts import Interrupts
from . import plain
from .plain import say


QUIET_HELP = "print only errors and warnings: no progress, no summary (for scripts)"


def configure(command: str | None, parser: argparse.ArgumentParser) -> None:
    """Add the command's own options and the function that runs it."""
    if command is None:
        parser.set_defaults(run=run_interface)
    elif command == "report":
        parser.add_argument("-o", "--out", metavar="DIR", required=True, help="report folder to create")
        parser.add_argument("--force", action="store_true", help="replace DIR if it already holds a report")
        parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS),
                            help="files to write (default: all)")
        parser.add_argument("--maps", type=int, default=DEFAULT_MAPS, metavar="N",
                            help=f"images whose maps are drawn in the report, chosen across the classes and "
                            f"both outcomes (default {DEFAULT_MAPS})")
        parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
        parser.set_defaults(run=run_report)
    elif command == "prune":
        parser.add_argument("-o", "--out", metavar="OUT.pt", required=True,
                            help="where to save the pruned model (a full module); its log goes to OUT.json")
        parser.add_argument("--force", action="store_true", help="replace OUT.pt and OUT.json if they exist")
        parser.add_argument("--criterion", choices=CRITERIA, default="semiotic",
                            help="channel importance: semiotic (docs/METHOD.md §5, default) or the l1 baseline")
        parser.add_argument("--target-params", type=float, metavar="F",
                            help="stop once the model has at most F of the original parameters (e.g. 0.5)")
        parser.add_argument("--target-macs", type=float, metavar="F", help="stop at F of the original MACs")
        parser.add_argument("--tolerance", type=float, default=0.02,
                            help="largest accuracy drop from the original allowed (default 0.02)")
        parser.add_argument("--max-steps", type=int, metavar="N", help="stop after N accepted moves")
        parser.add_argument("--fraction", type=float, default=0.1,
                            help="fraction of a layer's channels removed per move (default 0.1)")
        parser.add_argument("--finetune-batches", type=int, default=20, metavar="N",
                            help="batches of fine-tuning after each move (default 20; 0: none)")
        parser.add_argument("--holdout", type=float, default=0.5, metavar="F",
                            help="fraction of the images kept aside to measure accuracy (default 0.5; "
                            "the demo has its own training split)")
        parser.add_argument("--layers", nargs="+", metavar="NAME",
                            help="conv layers to measure and prune: names or globs (default: all convs)")
        parser.add_argument("--batch-size", type=int, default=32, help="images per batch")
        parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
        parser.set_defaults(run=run_prune)
    elif command == "compare":
        parser.add_argument("a", metavar="A", help="a model file (the options below apply to both), 'demo' for "
                            "the bundled model, or a report folder")
        parser.add_argument("b", metavar="B", help="the other model file, or report folder")
        parser.add_argument("-o", "--out", metavar="DIR", required=True, help="comparison report folder to create")
        parser.add_argument("--force", action="store_true", help="replace DIR if it already holds a report; "
                            "compare two analyses made with different settings (they are named first)")
        parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
        parser.set_defaults(run=run_compare)
    elif command == "open":
        parser.add_argument("directory", metavar="DIR", help="a report folder written by semiotui report")
        parser.set_defaults(run=run_open)
    elif command == "demo":
        parser.add_argument("--export", metavar="DIR", required=True,
                            help="write the demo's validation images, model and preprocessing into DIR")
        parser.set_defaults(run=run_demo)


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
    from semiotui.engine.analysis import add_maps
    from semiotui.engine.explain import add_contrast_maps, label_order_warning, showcase
    from semiotui.engine.reports.content import terminal_summary
    from semiotui.engine.reports.write import write_report
    from semiotui.engine.report_folder import claim_report_folder

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
        workspace, result = analysed
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
                control_with_progress(workspace, result, cancel)  # attaches the control to the result
            add_maps(workspace.model, workspace.images, workspace.layers, result, showcase(result, args.maps))
            add_contrast_maps(workspace.model, workspace.images, workspace.layers, result)
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


def _analyse_for_report(
    args: argparse.Namespace, shard, cancel: threading.Event
) -> tuple[Workspace, AnalysisResult] | None:
    """The workspace and its analysis; under torchrun, the gathered whole on rank 0 and None elsewhere."""
    from semiotui.engine import distributed

    from .workspace_args import workspace_from_args

    if shard is not None:
        args.device = distributed.start(shard, args.device)
    try:
        workspace = workspace_from_args(args)
        if shard is None or shard.leader:
            for warning in workspace.warnings:
                say(f"semiotui: warning: {flags_in(warning)}", always=True)
        if shard is None:
            try:
                result = analyse_with_progress(workspace, cancel=cancel)  # maps come after: across the classes
            except BatchFailed as exc:
                if not exc.result.images:
                    raise
                result = exc.result  # the images analysed before the failure are reported, marked partial
        else:
            result = _analyse_shard(workspace, shard, cancel)
            if result is None:
                return None
    finally:
        if shard is not None:
            distributed.stop()
    return workspace, result


def _analyse_shard(workspace: Workspace, shard, cancel: threading.Event) -> AnalysisResult | None:
    """This rank's block of the images; on rank 0 the gathered whole, elsewhere None."""
    from semiotui.engine import distributed

    block = shard.indices(len(workspace.images))
    part, error = None, None
    try:
        part = analyse_with_progress(
            workspace, images=workspace.images.subset(block), first_index=block.start, quiet=not shard.leader, cancel=cancel,
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
    workspace: Workspace,
    *,
    images: ImageSet | None = None,
    keep_maps: int | set[int] = 0,
    first_index: int = 0,
    quiet: bool = False,
    cancel: threading.Event | None = None,
) -> AnalysisResult:
    """Run the workspace's analysis (or of `images`, a part of them) with progress on stderr.

    A Rich bar on a terminal, else plain lines; nothing when `quiet`. Setting
    `cancel` (`Interrupts` does on Ctrl-C) stops after the current batch and
    keeps what was finished.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    quiet = quiet or plain.quiet()
    images = workspace.images if images is None else images
    total = len(images)
    settings = workspace.settings
    events = stream_analysis(workspace.model, images.batches(settings.batch_size), workspace.layers, settings,
                             keep_maps=keep_maps, total=total, cancel=cancel, first_index=first_index)
    console = Console(stderr=True, quiet=quiet)
    bar = Progress(TextColumn("analysing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                   TimeRemainingColumn(), console=console, disable=quiet or not console.is_terminal)
    task = bar.add_task("", total=total, rate="")
    last_line = 0

    def progress(event: BatchDone) -> None:
        nonlocal last_line, total
        total = event.total if event.total is not None else total  # less the files found unreadable
        bar.update(task, completed=event.done, total=total, rate=f"{event.rate:.1f} images/s")
        if not (quiet or console.is_terminal) and (event.done - last_line >= max(1, total // 10)
                                                    or event.done == total):
            say(f"analysed {event.done}/{total} images ({event.rate:.1f}/s)")
            last_line = event.done

    with bar:
        result = follow(events, Finished, progress, quiet=quiet).result
    if result.cancelled and result.images and not quiet:
        say(f"semiotui: analysis stopped after {len(result.images)} of {total} images; "
            "the report covers those (Ctrl-C again stops without one)")
    return result


def control_with_progress(workspace: Workspace, result: AnalysisResult, cancel: threading.Event | None = None):
    """The control analysis of `result` (engine.control), attached to it, with progress on stderr.

    Setting `cancel` (`Interrupts` does on Ctrl-C) stops after the current control network and keeps those done.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from semiotui.engine.control import ControlFinished, ControlProgress
    from semiotui.engine.session import control_steps

    control = workspace.control
    count = min(control.images, len(result.images))
    say(f"semiotui: control: {control.draws} copies of the model with shuffled weights on {count} images "
        "spread across the classes, one more pass each (--no-control skips it)")
    events = control_steps(workspace, result, cancel or threading.Event())
    console = Console(stderr=True, quiet=plain.quiet())
    bar = Progress(TextColumn("control"), BarColumn(), MofNCompleteColumn(), console=console,
                   disable=plain.quiet() or not console.is_terminal)
    task = bar.add_task("", total=control.draws)

    def progress(event: ControlProgress) -> None:
        bar.update(task, completed=event.done)
        if not console.is_terminal:
            say(f"control network {event.done}/{event.draws} done")

    with bar:
        done = follow(events, ControlFinished, progress).control
    if done is None:
        say("semiotui: warning: no control; no step is called superization", always=True)
    return done


def follow(events, end: type, progress, *, quiet: bool = False) -> object:
    """Print the engine's notices (unless `quiet`), hand every other event to `progress`, and return the final
    event of type `end`."""
    for event in events:
        if isinstance(event, end):
            return event
        if isinstance(event, Notice):
            if not quiet:
                say(f"semiotui: {event.message}")
        else:
            progress(event)
    raise AssertionError(f"the stream ended without {end.__name__}")


def run_compare(args: argparse.Namespace) -> int:
    """Two models (or two saved reports) on the same images: the comparison report, and its summary on stderr."""
    from semiotui.engine.analysis import add_maps
    from semiotui.engine.comparison import compare
    from semiotui.engine.reports.comparison import write_comparison
    from semiotui.engine.explain import showcase
    from semiotui.engine.report_folder import claim_report_folder
    from semiotui.engine.saved import open_report

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
            sides = [_analysed_side(args, model) for model in (args.a, args.b)]
            shown = {sides[0][1].images[k].name for k in showcase(sides[0][1], 4)}
            for workspace, result in sides:  # the same images' maps under both models
                add_maps(workspace.model, workspace.images, workspace.layers, result,
                         [k for k, row in enumerate(result.images) if row.name in shown])
        names = tuple(Path(x).name if x != "demo" else "bundled demo" for x in (args.a, args.b))
        comparison = compare(sides[0][1], sides[1][1], names, tuple(w.info.parameters for w, _ in sides),
                             specs=(sides[0][0].spec, sides[1][0].spec), force=args.force)
        path = write_comparison(claim, comparison, *sides)
    for line in comparison.summary():
        say(f"semiotui: {line}")
    say(f"semiotui: comparison written to {path}")
    return 0


def _analysed_side(args: argparse.Namespace, model: str) -> tuple[Workspace, AnalysisResult]:
    """One model of a comparison: loaded with the shared options, analysed, with its control."""
    from .workspace_args import workspace_from_args

    say(f"semiotui: {model}")
    demo = {"model": None, "arch": None} if model == "demo" else {"model": model}  # --arch is the other model's
    workspace = workspace_from_args(argparse.Namespace(**{**vars(args), **demo}))
    for warning in workspace.warnings:
        say(f"semiotui: warning: {flags_in(warning)}", always=True)
    result = analyse_with_progress(workspace)
    if workspace.control is not None:
        control_with_progress(workspace, result)
    return workspace, result


def run_prune(args: argparse.Namespace) -> int:
    from .prune_command import prune

    return prune(args)
