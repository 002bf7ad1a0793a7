"""From a model file and images to a `Workspace` ready to analyse: the engine's one door for a new analysis.

Everything is checked here, before any analysis starts: the model loads and takes
the input size, the images are readable, the layers exist, the settings fit the
model (a class index it has, labels where the target needs them) and the device's
memory (a batch it holds).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from . import demo
from .analysis import AnalysisSettings
from .control import ControlSettings
from .data import ImageSource, dataset_parts
from .device import available_memory, resolve_device
from .entropy import measuring_bytes
from .errors import InvalidValue, OutOfMemory
from .layers import LayerIndex
from .loading import SIDECAR, LoadedModel, check_input_size, input_spec, layer_index, load_model
from .workspace import ImageSet, InputSpec, ModelInfo, Workspace

# Of the memory free on the device, what one batch may take: `bytes_per_image` came within 3 to 16% above
# the peak measured on the CPU (TinyNet, ResNet-18 and -50, VGG-11); the rest is left to the model's own
# temporaries, the allocator and the rest of the system.
MEMORY_SHARE = 0.8


def open_workspace(
    model: str | Path | None = None,
    *,
    images: str | Path | Sequence[str | Path] = (),
    dataset: str | None = None,
    limit: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    trust: bool = False,
    arch: str | None = None,
    arch_kwargs: Mapping[str, object] | None = None,
    imports: Sequence[str] = (),
    pythonpath: Sequence[str | Path] = (),
    ema: bool = True,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    settings: AnalysisSettings = AnalysisSettings(),
    control: ControlSettings | None = ControlSettings(),
) -> Workspace:
    """Load `model` (None: the bundled demo) and its images; select `layers`; check `settings` against them.

    The model file and its loading options are `engine.loading.load_model`'s (`trust`, `arch`,
    `arch_kwargs`, `imports`, `pythonpath`, `ema`); `input_size`, `mean` and `std` override what the file
    tells (else 224×224 and ImageNet's). The images are files and folders (`images`) or a
    torchvision dataset on disk (`dataset`, NAME:ROOT[:SPLIT]), the first `limit` of them,
    `shuffle`d with `seed`; the demo's own without either. Files are listed, not decoded: the
    analysis reads each once, and skips (and names) those that are not readable images. `class_names` are the model's, in
    its order. `layers` are names or globs (default: convolutions and pooling); `settings`
    choose the method, the target, the device and the rest (`settings.output` picks the class
    scores of a model with several outputs); `control` the control networks (None: none).
    The batch is cut to what the device's free memory holds; `OutOfMemory` where not even
    one image fits. Things the user should know are in the workspace's `warnings`.
    """
    images = _paths(images)
    if images and dataset:
        raise InvalidValue("pass `images` or `dataset`, not both")
    if model is None and arch is not None:  # the demo would run in the place of the model meant
        raise InvalidValue("`arch` names the architecture of a weights file: pass that file as `model` "
                           "(with no `model`, semiotui opens its bundled demo)")
    if model is not None and not (images or dataset):
        raise InvalidValue("no images to analyse: pass `images` PATH (files or folders) or `dataset` NAME:ROOT")
    settings.check()
    if control is not None:
        control.check()
    device = resolve_device(settings.device)
    loaded = _model(model, device, trust=trust, arch=arch, arch_kwargs=arch_kwargs, imports=imports,
                    pythonpath=pythonpath, ema=ema)
    spec = input_spec(loaded.spec_defaults, input_size, mean, std)
    warnings = list(loaded.notes)
    if mean is None and std is None and (loaded.spec_defaults is None or loaded.normalisation_guessed):
        warnings.append(f"how {Path(loaded.info.path or 'the model').name} normalised its inputs in training is not "
                        "known: using ImageNet's mean and std; pass `mean` and `std` if it was trained otherwise")
    classes = check_input_size(loaded.model, spec, settings.output, notes=warnings)
    names = loaded.class_names
    if class_names is not None:
        names = _checked_class_names(class_names, classes)
    elif names is not None and len(names) != classes:
        warnings.append(f"the model has {classes} classes, not the {len(names)} names it came with; names not shown")
        names = None
    choice = {"limit": limit, "shuffle": shuffle, "seed": seed}
    if images:
        source = ImageSource.from_paths(images, spec, classes=names, **choice)
    elif dataset:
        source = ImageSource.from_dataset(dataset, spec, **choice)
    else:
        source = demo.demo_images("val", demo.OPENED_IMAGES, spec, **choice)
    warnings += source.warnings
    index = layer_index(loaded, source.example().to(device))
    if not index.spatial:
        raise InvalidValue(f"{loaded.info.path or 'the model'}: no layer returns a spatial output (batch, channels, "
                           "height, width), so there is no saliency map to measure; semiotui analyses CNNs")
    _check_target(settings.target, classes, source)
    if loaded.batch_size is not None and settings.batch_size > loaded.batch_size:
        settings = dataclasses.replace(settings, batch_size=loaded.batch_size)
    selected = index.select(layers)
    settings = _batch_that_fits(settings, index, selected, spec, len(source), device, warnings)
    return Workspace(
        model=loaded.model,
        info=loaded.info,
        spec=spec,
        index=index,
        layers=selected,
        images=source,
        settings=settings,
        class_names=names or source.class_names,
        warnings=warnings,
        control=control,
        inputs=input_paths(model, images, dataset),
    )


def input_paths(
    model: str | Path | None = None, images: str | Path | Sequence[str | Path] = (), dataset: str | None = None
) -> list[str]:
    """The user's files and folders an analysis reads (the model and its preprocess.json, the images, the
    dataset): what no output may replace or write into."""
    paths = [str(path) for path in _paths(images)]
    if model is not None:
        paths += [str(model), str(Path(model).with_name(SIDECAR))]
    if dataset:
        paths.append(dataset_parts(dataset)[1])
    return paths


def _paths(images: str | Path | Sequence[str | Path]) -> list[str | Path]:
    """One path or several: a folder named alone is not a sequence of one-letter names."""
    return [images] if isinstance(images, (str, Path)) else list(images)


def _model(path: str | Path | None, device: torch.device, **options: object) -> LoadedModel:
    if path is not None:
        return load_model(path, device=device, **options)
    model = demo.load_demo_model().to(device)
    info = ModelInfo(None, "demo", type(model).__name__, sum(p.numel() for p in model.parameters()))
    return LoadedModel(model, info, demo.INPUT_SPEC, class_names=list(demo.CLASSES))


def bytes_per_image(index: LayerIndex, layers: Sequence[str], spec: InputSpec) -> int:
    """What one image takes in an analysis pass (float32): the input and every module's output, which the
    backward pass keeps, and for the measured `layers` the copy the hooks keep and its gradient."""

    def values(name: str) -> int:
        info = index[name]
        return math.prod(info.output_shape) * info.calls if info.output_shape else 0

    kept = len(spec.mean) * math.prod(spec.size) + sum(values(info.name) for info in index if info.leaf)
    return 4 * (kept + 2 * sum(values(name) for name in layers))


def _batch_that_fits(settings: AnalysisSettings, index: LayerIndex, layers: list[str], spec: InputSpec,
                     images: int, device: torch.device, warnings: list[str]) -> AnalysisSettings:
    """`settings` with a batch that fits in the device's free memory (said in `warnings` when cut);
    `OutOfMemory` when even one image does not. A batch holds at most the `images` there are.

    A batch takes its pass through the model and the measuring of its maps, counted together: what the
    pass freed is not all there for the measuring's threads (measured: more than either alone).
    """
    free = available_memory(device)
    if free is None:
        return settings
    per_image = bytes_per_image(index, layers, spec)
    size = spec.size if settings.upsample else max((index[name].output_shape[1:] for name in layers),
                                                   key=math.prod)
    measuring = measuring_bytes(size, levels=settings.levels, estimator=settings.estimator, device=device)
    usable = int(free * MEMORY_SHARE)
    room = f"more than the {_mib(usable)} semiotui takes at most ({MEMORY_SHARE:.0%} of the {_mib(free)} free)"
    fits = max(0, usable - measuring) // per_image
    if fits < 1:
        h, w = spec.size
        raise OutOfMemory(
            f"one {h}x{w} image needs about {_mib(per_image + measuring)} on {device} (the outputs of the "
            f"model's layers with the {len(layers)} measured ones' copies and gradients, and the measuring of "
            f"their maps), {room}; pass a smaller `input_size`, select fewer `layers`, or use a device with more "
            "memory")
    if min(settings.batch_size, images) <= fits:
        return settings
    warnings.append(f"{settings.batch_size} images per batch need about "
                    f"{_mib(settings.batch_size * per_image + measuring)} on {device}, {room}; "
                    f"analysing {fits} per batch")
    return dataclasses.replace(settings, batch_size=fits)


def _mib(count: float) -> str:
    """A number of bytes in MiB, or in GiB from 1 GiB."""
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def _checked_class_names(names: Sequence[str], classes: int) -> list[str]:
    """The model's class names as given: one per class, each once."""
    if len(names) != classes:
        raise InvalidValue(f"`class_names` gives {len(names)} names but the model has {classes} classes; "
                           "give one name per class, in the model's order")
    if len(set(names)) != len(names):
        raise InvalidValue("`class_names` names a class twice; each name must be unique")
    return list(names)


def _check_target(target: str | int, classes: int, images: ImageSet) -> None:
    """A class index the model has; 'label' only with a label for every image, each a class of the model."""
    if target == "label":
        if any(label < 0 for label in images.labels):
            raise InvalidValue("`target` label needs a label for every image: use an ImageFolder tree "
                               "(class subfolders) or `dataset`, or `target` predicted")
        if max(images.labels) >= classes:
            raise InvalidValue(f"`target` label: the images have {max(images.labels) + 1} or more classes "
                               f"and the model only {classes}")
    elif isinstance(target, int) and not 0 <= target < classes:
        raise InvalidValue(f"`target` {target} is out of range: the model has {classes} classes "
                           f"(0 to {classes - 1})")
