"""From command-line options to a `Workspace`: the model, its images, layers and settings.

Every command that analyses calls `workspace_from_args` before any interface
opens, so a bad model, image or option fails here with one clear line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from semiotui.engine.analysis import AnalysisSettings
from semiotui.engine.control import ControlSettings
from semiotui.engine.data import ImageSource, dataset_parts
from semiotui.engine.device import resolve_device
from semiotui.engine.loading import SIDECAR, LoadedModel, check_input_size, input_spec, layer_index, load_model
from semiotui.engine.workspace import InputSpec, ModelInfo, Workspace

DEMO_IMAGES = 200  # validation images the demo opens with


def workspace_from_args(args: argparse.Namespace) -> Workspace:
    """Load the model (the bundled demo without MODEL) and its images; select layers; settle settings."""
    if args.images and args.dataset:
        raise ValueError("pass --images or --dataset, not both")
    if args.model is not None and not (args.images or args.dataset):
        raise ValueError("no images to analyse: pass --images PATH (files or folders) or --dataset NAME:ROOT")
    device = resolve_device(args.device)
    loaded = _model(args, device)
    spec = input_spec(loaded.spec_defaults, args.input_size, args.mean, args.std)
    output = _output(args.output)
    warnings = list(loaded.notes)
    classes = check_input_size(loaded.model, spec, output, notes=warnings)
    class_names = loaded.class_names
    if getattr(args, "classes", None):
        class_names = _class_names(args.classes, classes)
    elif class_names is not None and len(class_names) != classes:
        warnings.append(f"the model has {classes} classes, not the {len(class_names)} names it came with; "
                        "names not shown")
        class_names = None
    images = _images(args, spec, class_names)
    warnings += images.warnings
    example = next(images.batches(1)).images.to(device)
    index = layer_index(loaded, example)
    if not index.spatial:
        raise ValueError(f"{loaded.info.path or 'the model'}: no layer returns a spatial output (batch, channels, "
                         "height, width), so there is no saliency map to measure; semiotui analyses CNNs")
    layers = index.select(getattr(args, "layers", None))
    settings = _settings(args, output, classes, images)
    if loaded.batch_size is not None and settings.batch_size > loaded.batch_size:
        settings = dataclasses.replace(settings, batch_size=loaded.batch_size)
    return Workspace(
        model=loaded.model,
        info=loaded.info,
        spec=spec,
        index=index,
        layers=layers,
        images=images,
        settings=settings,
        class_names=class_names or images.class_names,
        warnings=warnings,
        control=_control(args),
        inputs=input_paths(args),
    )


def input_paths(args: argparse.Namespace) -> list[str]:
    """The user's files and folders a command analyses (model and its preprocess.json, images, dataset)."""
    paths = list(args.images)
    model = getattr(args, "model", None)  # compare names its two models otherwise
    if model is not None:
        paths += [model, str(Path(model).with_name(SIDECAR))]
    if args.dataset:
        paths.append(dataset_parts(args.dataset)[1])
    return paths


def _model(args: argparse.Namespace, device: torch.device) -> LoadedModel:
    if args.model is not None:
        return load_model(
            args.model,
            trust=args.trust,
            arch=args.arch,
            arch_kwargs=_arch_kwargs(args.arch_kwargs),
            imports=args.imports,
            pythonpath=args.pythonpath,
            device=device,
        )
    from semiotui.engine import demo

    model = demo.load_demo_model().to(device)
    info = ModelInfo(None, "demo", type(model).__name__, sum(p.numel() for p in model.parameters()))
    return LoadedModel(model, info, demo.INPUT_SPEC, list(demo.CLASSES))


def _images(args: argparse.Namespace, spec: InputSpec, class_names: list[str] | None) -> ImageSource:
    choice = {"limit": args.limit, "shuffle": args.shuffle, "seed": args.seed}
    if args.images:
        return ImageSource.from_paths(args.images, spec, classes=class_names, **choice)
    if args.dataset:
        return ImageSource.from_dataset(args.dataset, spec, **choice)
    from semiotui.engine import demo

    count = DEMO_IMAGES if args.shuffle or args.limit is None else min(args.limit, DEMO_IMAGES)
    samples = demo.demo_samples("val", count)  # a smaller count renders a prefix of the larger
    return ImageSource.from_images(
        [img for img, _ in samples],
        spec,
        labels=[label for _, label in samples],
        class_names=demo.CLASSES,
        names=[f"demo/val/{demo.CLASSES[label]}_{i:04d}" for i, (_, label) in enumerate(samples)],
        **choice,
    )


def _settings(
    args: argparse.Namespace, output: int | str | None, classes: int, images: ImageSource
) -> AnalysisSettings:
    """AnalysisSettings from the options a command has; AnalysisSettings' defaults for the rest."""
    given = {
        key: getattr(args, key)
        for key in ("method", "estimator", "levels", "normalized", "batch_size", "count_empty")
        if hasattr(args, key)
    }
    if hasattr(args, "native"):
        given["upsample"] = not args.native
    target = _target(getattr(args, "target", "predicted"), classes, images)
    settings = AnalysisSettings(**given, target=target, device=args.device, output=output)
    settings.check()
    return settings


def _target(text: str, classes: int, images: ImageSource) -> str | int:
    """'predicted', 'label' (only with labelled images) or a class index of the model."""
    if text == "label":
        if any(label < 0 for label in images.labels):
            raise ValueError("--target label needs a label for every image: use an ImageFolder tree "
                             "(class subfolders) or --dataset, or --target predicted")
        if max(images.labels) >= classes:
            raise ValueError(f"--target label: the images have {max(images.labels) + 1} or more classes "
                             f"and the model only {classes}")
        return text
    if text == "predicted":
        return text
    try:
        index = int(text)
    except ValueError:
        raise ValueError(f"--target {text}: expected predicted, label or a class index") from None
    if not 0 <= index < classes:
        raise ValueError(f"--target {index} is out of range: the model has {classes} classes (0 to {classes - 1})")
    return index


def _class_names(text: str, classes: int) -> list[str]:
    """`--classes`: a file with one name per line, or comma-separated names; as many as the model has classes."""
    path = Path(text).expanduser()
    if path.is_file():
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--classes {text}: cannot read the file ({exc})") from None
    else:
        names = [name.strip() for name in text.split(",") if name.strip()]
    if len(names) != classes:
        raise ValueError(f"--classes gives {len(names)} names but the model has {classes} classes; "
                         "give one name per class, in the model's order")
    if len(set(names)) != len(names):
        raise ValueError("--classes names a class twice; each name must be unique")
    return names


def _control(args: argparse.Namespace) -> ControlSettings | None:
    """The control analysis the options ask for (commands without these options get the default)."""
    if getattr(args, "no_control", False):
        return None
    control = ControlSettings(draws=getattr(args, "control_draws", ControlSettings.draws),
                              images=getattr(args, "control_images", ControlSettings.images))
    control.check()
    return control


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
        raise ValueError(f"--arch-kwargs is not valid JSON ({exc.msg}); e.g. '{{\"num_classes\": 10}}'") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--arch-kwargs must be a JSON object, e.g. '{{\"num_classes\": 10}}', got {text}")
    return kwargs
