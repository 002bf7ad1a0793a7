"""The `semiotui` command line: the interface by default, and the headless subcommands."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from semiotui import METHOD, __version__

from .interrupts import interruptible_imports

# Nothing here imports NumPy or PyTorch: `--help` and argument errors answer at once, and a Ctrl-C during
# their seconds of import (once a command runs) is `main`'s.

COMMANDS = ("report", "open", "prune", "compare", "demo")  # grows as each subcommand lands

# The engine's choices and defaults, written here because the engine's modules import PyTorch;
# tests/test_start.py checks that they equal the engine's.
METHODS = ("gradcam", "layercam", "gradxact", "activation")
ESTIMATORS = ("arrangement", "aura", "histogram", "location")
CRITERIA = ("semiotic", "l1")
FORMATS = ("html", "md", "json", "csv")
DEFAULT_MAPS = 6

QUIET_HELP = "print only errors and warnings: no progress, no summary (for scripts)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `semiotui` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command = argv[0] if argv and argv[0] in COMMANDS else None
        args = build_parser(command).parse_args(argv[1:] if command else argv)
        with interruptible_imports() as pressed:  # PyTorch is imported by the command, on its first lines
            from . import commands  # the commands' bodies, with the engine behind them
            return run(getattr(commands, args.run), args, interrupted=pressed)
    except KeyboardInterrupt:  # also while the engine is imported, before a command installs its own handler
        print("semiotui: interrupted", file=sys.stderr)  # not `say`: importing it may be what was interrupted
        return 130


def run(command: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, *,
        interrupted: Sequence[int] = ()) -> int:
    """Run a parsed command: every failure becomes one line (`--debug` shows the traceback first).

    A failure after a Ctrl-C (`interrupted`, as `interruptible_imports` notes it) is the interrupt, however a
    C extension reported it.
    """
    from .errors import for_command_line
    from .plain import say, set_quiet

    set_quiet(getattr(args, "quiet", False))
    try:
        return int(command(args) or 0)
    except Exception as exc:
        if interrupted:
            raise KeyboardInterrupt from None
        if args.debug:
            traceback.print_exc()
        say(f"semiotui: error: {for_command_line(exc)}", always=True)
        return 1


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors quote the arguments as text (`readable`): it echoes some raw."""

    def error(self, message: str) -> NoReturn:
        from semiotui.engine.names import readable  # the standard library only

        super().error(readable(message))


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """The parser of the interface (`command=None`) or of one subcommand; `run` names its function in `commands`."""
    prog = "semiotui" if command is None else f"semiotui {command}"
    descriptions = {
        None: "Explore how a CNN abstracts what it sees: per-layer saliency, spatial entropy and "
        "superization, in the terminal. With no MODEL, opens the bundled demo. "
        f"Subcommands: {', '.join(COMMANDS)} (semiotui SUBCOMMAND --help). The method: {METHOD}.",
        "report": "Run the analysis with no interface and write a report folder.",
        "prune": f"Greedy pruning guided by the entropy analysis ({METHOD} §5).",
        "demo": "The bundled demo model and its images.",
        "open": "Browse a saved report folder, with no model and no GPU.",
        "compare": "Two models on the same images side by side (a pruned one and its original, say), or two "
        "saved report folders; writes a comparison report.",
    }
    parser = Parser(prog=prog, description=descriptions[command])
    parser.add_argument("--version", action="version", version=f"semiotui {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    if command in (None, "report", "prune", "compare"):
        add_model_options(parser, positional=command != "compare")
        add_data_options(parser)
    if command in (None, "report", "compare"):
        add_analysis_options(parser)
    add_command_options(command, parser)
    parser.set_defaults(run=f"run_{command or 'interface'}")  # the function in `commands` that runs it
    return parser


def add_command_options(command: str | None, parser: argparse.ArgumentParser) -> None:
    """The options of one subcommand alone."""
    if command == "report":
        parser.add_argument("-o", "--out", metavar="DIR", required=True, help="report folder to create")
        parser.add_argument("--force", action="store_true", help="replace DIR if it already holds a report")
        parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS),
                            help="files to write (default: all)")
        parser.add_argument("--maps", type=int, default=DEFAULT_MAPS, metavar="N",
                            help=f"images whose maps are drawn in the report, chosen across the classes and "
                            f"both outcomes (default {DEFAULT_MAPS})")
        parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    elif command == "prune":
        parser.add_argument("-o", "--out", metavar="OUT.pt", required=True,
                            help="where to save the pruned model (a full module); its log goes to OUT.json")
        parser.add_argument("--force", action="store_true", help="replace OUT.pt and OUT.json if they exist")
        parser.add_argument("--criterion", choices=CRITERIA, default="semiotic",
                            help=f"channel importance: semiotic ({METHOD} §5, default) or the l1 baseline")
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
    elif command == "compare":
        parser.add_argument("a", metavar="A", help="a model file (the options below apply to both), 'demo' for "
                            "the bundled model, or a report folder")
        parser.add_argument("b", metavar="B", help="the other model file, or report folder")
        parser.add_argument("-o", "--out", metavar="DIR", required=True, help="comparison report folder to create")
        parser.add_argument("--force", action="store_true", help="replace DIR if it already holds a report; "
                            "compare two analyses made with different settings (they are named first)")
        parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    elif command == "open":
        parser.add_argument("directory", metavar="DIR", help="a report folder written by semiotui report")
    elif command == "demo":
        parser.add_argument("--export", metavar="DIR", required=True,
                            help="write the demo's validation images, model and preprocessing into DIR")


def add_model_options(parser: argparse.ArgumentParser, *, positional: bool = True) -> None:
    g = parser.add_argument_group("model")
    if positional:
        g.add_argument("model", nargs="?", metavar="MODEL",
                       help="model file: a full pickle (needs --trust), a checkpoint, state dict or .safetensors "
                       "(with --arch; or a shards' .safetensors.index.json), a torch.export .pt2, an ONNX file or a "
                       "Hugging Face image-classifier folder (TorchScript is refused: it allows no hooks); none: the "
                       "bundled demo. README 'Model files' lists what each needs")
    g.add_argument("--trust", action="store_true",
                   help="allow loading a full pickled model; pickles can run code, so only for files you trust")
    g.add_argument("--arch", help="architecture for a state dict: a torchvision model name (resnet18), "
                   "timm:NAME (a timm model, with pip install 'semiotui[timm]'), or package.module:Class "
                   "(imports that module and calls Class: runs its code)")
    g.add_argument("--arch-kwargs", metavar="JSON", help="keyword arguments for --arch, as JSON")
    g.add_argument("--no-ema", action="store_true",
                   help="from a checkpoint holding trained and EMA weights (timm's train script), load the "
                   "trained ones (default: the EMA ones)")
    g.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (for your own model classes; runs its code); repeatable")
    g.add_argument("--pythonpath", action="append", default=[], metavar="DIR",
                   help="add DIR to the import path (its modules can then run as --arch or --import); repeatable")
    g.add_argument("--output", metavar="N|KEY",
                   help="which output holds the class scores, for models with several")
    g.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                   help="input size (default: the model's own where known, else 224 224)")
    g.add_argument("--mean", nargs="+", type=float, help="per-channel mean (default: the model's, else ImageNet)")
    g.add_argument("--std", nargs="+", type=float, help="per-channel std (default: the model's, else ImageNet)")
    g.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("images")
    g.add_argument("--images", action="append", default=[], metavar="PATH",
                   help="image files or folders (recursive; an ImageFolder tree gives labels); repeatable")
    g.add_argument("--dataset", metavar="NAME:ROOT",
                   help="a torchvision dataset already on disk: cifar10, cifar100, mnist, imagenet (never downloaded)")
    g.add_argument("--limit", type=int, metavar="N", help="use the first N files (after --shuffle); unreadable ones among them are skipped")
    g.add_argument("--shuffle", action="store_true", help="take the images in a random order (see --seed)")
    g.add_argument("--seed", type=int, default=0, help="seed for --shuffle (default 0)")
    g.add_argument("--classes", metavar="NAMES|FILE",
                   help="the model's class names in its order: comma-separated, or a file with one per line; "
                   "class folders are matched to them by name")


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("analysis")
    g.add_argument("--layers", nargs="+", metavar="NAME",
                   help="layers to measure: dotted names or globs ('features.*'); default: conv and pooling layers")
    g.add_argument("--method", choices=METHODS, default="gradcam", help="saliency method (default gradcam)")
    g.add_argument("--estimator", choices=ESTIMATORS, default="arrangement",
                   help="entropy estimator (default arrangement: the aura entropy less its pixels' in random "
                   f"orders, {METHOD} §2.1; aura: the paper's plain estimator)")
    g.add_argument("--levels", type=int, default=256, help="grey levels of the entropy, 2 to 4096 (default 256)")
    g.add_argument("--native", action="store_true",
                   help="measure each map at the layer's own size instead of the input size")
    g.add_argument("--normalized", action="store_true", help="report entropy divided by its maximum")
    g.add_argument("--target", default="predicted",
                   help="class each map explains: predicted (default), label, or a class index")
    g.add_argument("--batch-size", type=int, default=32, help="images per batch (halved on out-of-memory)")
    g.add_argument("--count-empty", action="store_true",
                   help="count empty maps as entropy 0 (the literal reading) instead of leaving them out; "
                   "the arrangement estimator always does, 0 being its value for a map without structure")
    g.add_argument("--no-control", action="store_true",
                   help="skip the control (copies of the model with shuffled weights); without it no step is "
                   "called superization")
    g.add_argument("--control-draws", type=int, default=8, metavar="N",
                   help="control networks, each one more pass over the control images (default 8)")
    g.add_argument("--control-images", type=int, default=64, metavar="N",
                   help="images the control and the verdict use: a seeded sample of N spread across the classes "
                   "(default 64)")
