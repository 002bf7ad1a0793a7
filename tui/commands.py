"""The bodies of the command-line commands, wired into the parsers of `cli`."""

from __future__ import annotations

import argparse


def configure(command: str | None, parser: argparse.ArgumentParser) -> None:
    """Add the command's own options and the function that runs it."""
    if command is None:
        parser.set_defaults(run=run_interface)
    elif command == "demo":
        parser.add_argument("--export", metavar="DIR", required=True,
                            help="write the demo's validation images, model and preprocessing into DIR")
        parser.set_defaults(run=run_demo)


def run_interface(args: argparse.Namespace) -> int:
    from .app import run_app
    from .workspace_args import workspace_from_args

    return run_app(workspace_from_args(args))


def run_demo(args: argparse.Namespace) -> int:
    from semiotui.engine.demo import export_demo

    export_demo(args.export)
    return 0
