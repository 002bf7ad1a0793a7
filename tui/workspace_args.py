"""From command-line options to a `Workspace`: the flags mapped onto `engine.opening.open_workspace`.

Every command that analyses calls `workspace_from_args` before any interface
opens, so a bad model, image or option fails here with one clear line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from semiotui.engine import AnalysisSettings, ControlSettings, opening
from semiotui.engine.errors import InvalidValue
from semiotui.engine.workspace import Workspace


def workspace_from_args(args: argparse.Namespace) -> Workspace:
    """The workspace the options describe (the bundled demo without MODEL)."""
    return opening.open_workspace(
        args.model,
        images=args.images,
        dataset=args.dataset,
        limit=args.limit,
        shuffle=args.shuffle,
        seed=args.seed,
        trust=args.trust,
        arch=args.arch,
        arch_kwargs=_arch_kwargs(args.arch_kwargs),
        imports=args.imports,
        pythonpath=args.pythonpath,
        ema=not args.no_ema,
        input_size=args.input_size,
        mean=args.mean,
        std=args.std,
        class_names=_class_names(args.classes) if getattr(args, "classes", None) else None,
        layers=getattr(args, "layers", None),
        settings=_settings(args),
        control=_control(args),
    )


def input_paths(args: argparse.Namespace) -> list[str]:
    """The user's files and folders a command analyses (model and its preprocess.json, images, dataset)."""
    return opening.input_paths(getattr(args, "model", None), args.images, args.dataset)  # compare has no MODEL


def _settings(args: argparse.Namespace) -> AnalysisSettings:
    """AnalysisSettings from the options a command has; AnalysisSettings' defaults for the rest."""
    given = {
        key: getattr(args, key)
        for key in ("method", "estimator", "levels", "normalized", "batch_size", "count_empty")
        if hasattr(args, key)
    }
    if hasattr(args, "native"):
        given["upsample"] = not args.native
    target = _target(getattr(args, "target", "predicted"))
    return AnalysisSettings(**given, target=target, device=args.device, output=_output(args.output))


def _target(text: str) -> str | int:
    """`--target`: predicted, label or a class index."""
    if text in ("predicted", "label"):
        return text
    try:
        return int(text)
    except ValueError:
        raise InvalidValue(f"--target {text}: expected predicted, label or a class index") from None


def _class_names(text: str) -> list[str]:
    """`--classes`: a file with one name per line, or comma-separated names."""
    path = Path(text).expanduser()
    if not path.is_file():
        return [name.strip() for name in text.split(",") if name.strip()]
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidValue(f"--classes {text}: cannot read the file ({exc})") from None


def _control(args: argparse.Namespace) -> ControlSettings | None:
    """The control analysis the options ask for (commands without these options get the default)."""
    if getattr(args, "no_control", False):
        return None
    return ControlSettings(draws=getattr(args, "control_draws", ControlSettings.draws),
                           images=getattr(args, "control_images", ControlSettings.images))


def _output(text: str | None) -> int | str | None:
    """`--output`: an index for a tuple of outputs, a key for a dict."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return text


def _arch_kwargs(text: str | None) -> dict[str, object] | None:
    if text is None:
        return None
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidValue(f"--arch-kwargs is not valid JSON ({exc.msg}); e.g. '{{\"num_classes\": 10}}'") from None
    if not isinstance(kwargs, dict):
        raise InvalidValue(f"--arch-kwargs must be a JSON object, e.g. '{{\"num_classes\": 10}}', got {text}")
    return kwargs
