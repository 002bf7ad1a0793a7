"""Opening a user's model file safely, whatever its format, and the input it expects.

Formats: a full pickled module (only with `trust`: unpickling can run code), a
checkpoint, state dict or safetensors weights plus an architecture (torchvision,
`timm:NAME`, or the user's class), a `torch.export` program, an ONNX graph
(`engine.onnx_models`) and a Hugging Face folder (`engine.hf_models`). Every
pickle is first read with `torch.load(weights_only=True)`, which runs no
code; a `torch.export` archive is first checked by `engine.archive` (torch
unpickles parts of it), then loaded from the bytes checked with every
`torch.load` inside forced to `weights_only`. TorchScript is recognised and refused with the reason, since PyTorch does
not allow the forward hooks the per-layer maps need on a loaded ScriptModule.
Every failure is a `LoadError` with a one-line message naming the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import io
import json
import logging
import math
import os
import pickle
import pickletools
import re
import sys
import threading
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.serialization import MAGIC_NUMBER

from . import hf_models, onnx_models, timm_models
from .archive import UnsafeArchive, check_archive
from .checkpoint import CHECKPOINT_KEYS, prefix_note, strip_prefix, weights_entry
from .errors import InvalidValue, LoadError, one_line
from .hooks import analysis_mode
from .layers import DEFAULT_TYPES, LayerIndex, index_layers
from .onnx_models import looks_like_onnx
from .saliency import OutputSelector, select_output
from .tensor_files import index_beside, is_index, is_safetensors, read_sharded, read_tensors
from .workspace import InputSpec, ModelInfo

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GREY_MEAN, GREY_STD = (0.5,), (0.5,)  # for a grey model that says nothing of its own
DEFAULT_SIZE = (224, 224)
# The largest input side: one 4096x4096 image already takes gigabytes through a CNN with gradients, where a
# preprocess.json asking for 9000x9000 took 12 GB; CNNs are trained at a few hundred pixels.
MAX_INPUT_SIDE = 4096
WHOLE_MODELS = ("pickle", "export", "onnx", "hf")  # formats that need no `arch`
SIDECAR = "preprocess.json"  # input size, mean, std and classes beside a model (`semiotui demo --export`)
# Classes a checkpoint may hold that rebuild as plain data, running no code: timm's train script saves its
# argparse options beside the weights.
SAFE_GLOBALS = [argparse.Namespace]
_SHOWN = 3  # names listed per kind of key mismatch
_LOADS = threading.Lock()  # one torch.load at a time: `_torch_loads` changes how every one unpickles
_EXPORT_LOGGERS = ("torch.export", "torch._export", "torch.fx.experimental.symbolic_shapes")
_FORCE_SAFE, _FORCE_UNSAFE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@dataclass
class LoadedModel:
    """A model ready for analysis, with what its file tells about its input and classes."""

    model: nn.Module
    info: ModelInfo
    spec_defaults: InputSpec | None  # None: unknown (the caller uses 224 and ImageNet)
    class_names: list[str] | None = None
    batch_size: int | None = None  # the only batch size it accepts (a static torch.export program)
    layer_types: dict[str, str] = field(default_factory=dict)  # module types a torch.export program lost
    notes: list[str] = field(default_factory=list)  # things the user should know, one line each
    normalisation_guessed: bool = False  # spec_defaults' mean and std are ImageNet's for want of the model's


def load_model(
    path: str | Path,
    *,
    trust: bool = False,
    arch: str | None = None,
    arch_kwargs: Mapping[str, object] | None = None,
    imports: Sequence[str] = (),
    pythonpath: Sequence[str | Path] = (),
    device: str | torch.device = "cpu",
    ema: bool = True,
) -> LoadedModel:
    """Load the model in `path` in eval mode on `device`, detecting its format.

    `ema`: from a checkpoint holding trained and EMA weights, the EMA ones (else the trained ones).
    """
    file = _checked_file(Path(path))
    _extend_imports(pythonpath, imports)
    kind = _sniff(file)
    if kind == "torchscript":
        raise LoadError(
            f"{file} is a TorchScript model; PyTorch does not allow forward hooks on a loaded "
            "ScriptModule, and the per-layer maps need them (PyTorch's converter to an exported program "
            "flattens it into one graph, with no layers left to hook). Save the model itself instead: "
            "torch.save(model.state_dict()) and pass `arch`, or torch.save(model) with `trust`, "
            "or a torch.export .pt2"
        )
    if kind == "export":
        loaded = _load_export(file, trust)
    elif kind == "onnx":
        loaded = _load_onnx(file)
    elif kind == "hf":
        loaded = _load_hf(file)
    elif kind in ("safetensors", "index"):
        loaded = _load_safetensors(file, kind, arch, arch_kwargs)
    else:
        loaded = _load_pickle(file, trust, arch, arch_kwargs, ema)
    if arch is not None and loaded.info.format in WHOLE_MODELS:
        loaded.notes.append(f"--arch {arch} ignored: {file.name} holds the whole model")
    _apply_sidecar(file, loaded)
    loaded.model.to(device).eval()
    return loaded


def input_spec(
    defaults: InputSpec | None,
    size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> InputSpec:
    """The input spec: the user's values where given, else the model's, else 224 and ImageNet."""
    base = defaults or InputSpec(DEFAULT_SIZE, IMAGENET_MEAN, IMAGENET_STD)
    if size is not None:
        if len(size) != 2 or min(size) < 1:
            raise InvalidValue(f"`input_size` needs two positive numbers H W, got {' '.join(map(str, size))}")
        if max(size) > MAX_INPUT_SIDE:
            raise InvalidValue(f"`input_size` {' '.join(map(str, size))} is over the largest side semiotui analyses, "
                               f"{MAX_INPUT_SIDE} pixels; pass a smaller `input_size` H W")
        base = dataclasses.replace(base, size=(int(size[0]), int(size[1])))
    if mean is not None or std is not None:
        base = dataclasses.replace(
            base,
            mean=tuple(float(v) for v in mean) if mean is not None else base.mean,
            std=tuple(float(v) for v in std) if std is not None else base.std,
        )
    if len(base.mean) != len(base.std) or len(base.mean) not in (1, 3):
        raise InvalidValue(
            f"`mean` has {len(base.mean)} values and `std` {len(base.std)}; give both with one value "
            "per channel (3 for colour, 1 for grey)"
        )
    if not all(math.isfinite(v) for v in base.mean):
        raise InvalidValue(f"`mean` must be finite numbers, got {' '.join(map(str, base.mean))}; give one per "
                           f"channel, e.g. ImageNet's {' '.join(map(str, IMAGENET_MEAN))}")
    if not all(0 < v < math.inf for v in base.std):  # NaN fails too; inf or 0 would make every input 0 or inf
        raise InvalidValue(f"`std` must be positive finite numbers, got {' '.join(map(str, base.std))}; give one per "
                           f"channel, e.g. ImageNet's {' '.join(map(str, IMAGENET_STD))}")
    return base


def check_input_size(
    model: nn.Module, spec: InputSpec, output: OutputSelector = None, notes: list[str] | None = None
) -> int:
    """Run one zero image through `model` at `spec`'s size; return the number of classes.

    Turns a failure into a message naming the size tried, so a wrong `input_size`
    (or channel count) is caught before any analysis starts. An `output` the model
    has no use for (it returns a single tensor) is said in `notes`.
    """
    channels = len(spec.mean)
    h, w = spec.size
    param = next(model.parameters(), None)
    x = torch.zeros(1, channels, h, w, device=param.device if param is not None else "cpu")
    try:
        with analysis_mode(model), torch.no_grad():
            out = model(x)
    except Exception as exc:  # any failure of the model's own code means the input is wrong
        expected = _first_conv_channels(model)
        if expected is not None and expected != channels:
            hint = (f"the model expects {expected} channel(s): pass `mean` and `std` with "
                    f"{expected} value(s) each")
        else:
            hint = "pass the size it expects with `input_size` H W"
        raise InvalidValue(
            f"the model rejects a {channels}x{h}x{w} input ({one_line(exc, short=True)}); {hint}"
        ) from exc
    if output is not None and isinstance(out, torch.Tensor) and notes is not None:
        notes.append(f"--output {output} ignored: the model returns a single tensor of class scores")
    return select_output(out, output).shape[1]


def layer_index(loaded: LoadedModel, example: torch.Tensor) -> LayerIndex:
    """`index_layers`, with the module types a torch.export program lost put back."""
    index = index_layers(loaded.model, example)
    if not loaded.layer_types:
        return index
    wanted = {f"{t.__module__}.{t.__qualname__}" for t in DEFAULT_TYPES}
    return LayerIndex(
        dataclasses.replace(
            info,
            type=loaded.layer_types.get(info.name, info.type).rpartition(".")[2],
            default=info.spatial and loaded.layer_types.get(info.name) in wanted,
        )
        for info in index
    )


def _checked_file(path: Path) -> Path:
    if not path.exists():
        raise LoadError(f"{path}: no such file; check the model path")
    if hf_models.is_model_folder(path):
        return path
    if path.is_dir():
        raise LoadError(f"{path} is a folder; pass the model file inside it (.pt, .pth, .pt2, .safetensors, .onnx), "
                        f"or a Hugging Face model folder (one with {hf_models.CONFIG})")
    if not path.is_file():  # reading a FIFO waits for a writer, a device may never end
        raise LoadError(f"{path} is not a regular file (a pipe, device or socket); pass the model file itself")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        raise LoadError(f"{path}: cannot read it ({exc.strerror or exc}); check its permissions") from exc
    if size == 0:
        raise LoadError(f"{path} is empty (0 bytes); the save or copy that made it did not finish")
    return path


def _extend_imports(pythonpath: Sequence[str | Path], imports: Sequence[str]) -> None:
    """Make the user's own model classes importable (`pythonpath`, `imports`)."""
    for folder in pythonpath:
        if not Path(folder).is_dir():
            raise LoadError(f"`pythonpath` {folder}: no such folder")
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    for name in imports:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the user's module may fail in any way; say which one
            raise LoadError(
                f"`imports` {name} failed ({one_line(exc, short=True)}); "
                "add the folder that holds it with `pythonpath` DIR"
            ) from exc


def _sniff(path: Path) -> str:
    """'torchscript', 'export', 'pickle', 'safetensors', 'index' (of safetensors shards), 'onnx' or 'hf' (a
    folder), from the content; LoadError for anything else."""
    if path.is_dir():
        return "hf"
    with path.open("rb") as f:
        head = f.read(4096)
    if is_safetensors(head):
        return "safetensors"
    if looks_like_onnx(head):
        return "onnx"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                formats = [n for n in names if n.endswith("/archive_format") or n == "archive_format"]
                if formats and z.read(formats[0]).strip() == b"pt2":
                    return "export"
        except (zipfile.BadZipFile, OSError) as exc:
            raise _damaged_archive(path, exc) from exc
        if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
            return "torchscript"
        if not any(n.endswith("data.pkl") for n in names):
            raise LoadError(f"{path} is a zip archive but not a PyTorch file (it has no data.pkl)")
        return "pickle"
    if head.startswith(b"\x80"):  # pickle protocol 2 or later: torch's legacy format or a plain pickle
        if not _opens_with_magic(head):  # neither torch.load's unpickler reads it: it is no damage of ours to name
            raise LoadError(
                f"{path} is a plain Python pickle (pickle.dump), not a file torch.save wrote; load it in Python "
                "and save it with torch.save(model.state_dict()) (then pass `arch`) or torch.save(model)"
            )
        return "pickle"
    if is_index(head):
        return "index"
    if _looks_like_text(head):
        raise LoadError(f"{path} is a text file, not a model; pass the file written by torch.save or torch.export.save")
    raise LoadError(
        f"{path} is not a PyTorch model file, safetensors weights or an ONNX model (unrecognised content); pass "
        "a file written by torch.save, torch.export.save, safetensors or an ONNX exporter"
    )


def _opens_with_magic(head: bytes) -> bool:
    """Whether a pickle opens as torch.save's legacy format does, with its magic number pickled alone.

    `pickletools` only lists the pickle's operations: nothing is unpickled.
    """
    try:
        values = [arg for op, arg, _ in pickletools.genops(head) if op.name not in ("PROTO", "FRAME", "STOP")]
    except Exception:  # any bytes can come here: a pickle cut by the read, or none at all, is not the header
        return False
    return values == [MAGIC_NUMBER]


def _pickle_protocol(path: Path) -> int | None:
    """The pickle protocol torch.save wrote `path` with (its `pickle_protocol`), from the pickle's first bytes."""
    try:
        if not zipfile.is_zipfile(path):
            with path.open("rb") as f:
                head = f.read(2)
        else:
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                head = z.open(name).read(2) if name is not None else b""
    except (OSError, zipfile.BadZipFile):
        return None
    return head[1] if len(head) == 2 and head[0] == pickle.PROTO[0] else None


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # only a character cut by the 4096-byte read
    return True


def _load_pickle(path: Path, trust: bool, arch: str | None, arch_kwargs: Mapping[str, object] | None,
                 ema: bool) -> LoadedModel:
    obj = _torch_load(path, trust)
    if isinstance(obj, nn.Module):
        return _loaded(obj, path, "pickle", None)
    if not isinstance(obj, Mapping):
        raise LoadError(
            f"{path} holds a {type(obj).__name__}, not a model or a state dict; pass the file "
            "written by torch.save(model) or torch.save(model.state_dict())"
        )
    names = _class_names(obj)
    module = next((obj[k] for k in CHECKPOINT_KEYS if isinstance(obj.get(k), nn.Module)), None)
    if module is not None:
        loaded = _loaded(module, path, "pickle", None)
        loaded.class_names = names
        return loaded
    key, note = weights_entry(obj, ema)
    state = _state_dict(obj[key] if key is not None else obj, path)
    where = f" under '{key}'" if key is not None else ""
    what = f"a state dict ({len(state)} tensors{where})"
    loaded = _from_state(state, path, "checkpoint" if key is not None else "state_dict", what, arch, arch_kwargs)
    loaded.notes[:0] = [note] if note else []
    loaded.class_names = names or loaded.class_names
    return loaded


def _load_safetensors(path: Path, kind: str, arch: str | None, arch_kwargs: Mapping[str, object] | None
                      ) -> LoadedModel:
    """Weights in a safetensors file, or in the shards an index file lists (also when `path` is one shard)."""
    index = path if kind == "index" else index_beside(path)
    state = read_sharded(index) if index is not None else read_tensors(path)
    if not state:
        raise LoadError(f"{path} holds no tensors; it is not a model's weights")
    where = f" in the shards {index.name} lists" if index is not None else ""
    loaded = _from_state(state, path, "safetensors", f"safetensors weights ({len(state)} tensors{where})", arch,
                         arch_kwargs)
    if index is not None and index != path:
        loaded.notes.insert(0, f"{path.name} is one shard: read every shard {index.name} lists")
    return loaded


def _from_state(state: dict[str, torch.Tensor], path: Path, fmt: str, what: str, arch: str | None,
                arch_kwargs: Mapping[str, object] | None) -> LoadedModel:
    """The model `arch` names with the weights `state` (`what` the file holds, said where `arch` is missing)."""
    if arch is None:
        raise LoadError(
            f"{path} holds {what}, not a model; name its architecture with `arch` (a torchvision "
            f"name such as resnet18, {timm_models.PREFIX}NAME for a timm model, or package.module:Class)"
        )
    kwargs = dict(arch_kwargs or {})
    model = _build_arch(arch, kwargs)
    state, prefix = strip_prefix(state, model.state_dict())
    notes = [prefix_note(prefix, path.name)] if prefix else []
    classes = _head_size(model, state) if _sized_by_weights(arch) and "num_classes" not in kwargs else None
    if classes is not None:  # a fine-tuned model: its head says how many classes it has
        kwargs["num_classes"] = classes
        model = _build_arch(arch, kwargs)
        notes.append(f"built {arch} with {classes} classes, as the classifier in {path.name} has "
                     "(pass --arch-kwargs '{\"num_classes\": N}' to choose)")
    spec, arch_names, said = _arch_meta(arch, model)
    if arch_names and kwargs.get("num_classes", len(arch_names)) != len(arch_names):
        arch_names = None  # the weights' categories do not apply to a new head
    _load_weights(model, state, path, arch)
    loaded = _loaded(model, path, fmt, arch)
    loaded.notes += notes + ([said] if said else [])
    loaded.spec_defaults = spec
    loaded.class_names = arch_names
    return loaded


@contextmanager
def _torch_loads(*, weights_only: bool) -> Iterator[None]:
    """Hold the one lock for torch.load; with `weights_only`, every torch.load inside uses PyTorch's
    weights_only unpickler whatever its caller asks (torch.export.load falls back to the full one).

    PyTorch reads the switch from the environment at each call, so it is process-wide: loads take turns.
    """
    with _LOADS:
        saved = {name: os.environ.pop(name, None) for name in (_FORCE_SAFE, _FORCE_UNSAFE)}
        if weights_only:
            os.environ[_FORCE_SAFE] = "1"
        try:
            with warnings.catch_warnings():  # said to stderr for any protocol but 2; a refusal is said in ours
                warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
                yield
        finally:
            for name, value in saved.items():
                os.environ.pop(name, None)
                if value is not None:
                    os.environ[name] = value


@contextmanager
def _kept_logs(records: list[logging.LogRecord], *loggers: str) -> Iterator[None]:
    """Keep what these loggers say in `records` instead of printing it: torch.export.load logs the
    traceback of each way it tried before raising a vaguer error, and a message of ours says it in one line."""
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    saved = [(logger, logger.handlers, logger.propagate) for logger in map(logging.getLogger, loggers)]
    for logger, _, _ in saved:  # torch gives some of its loggers handlers of their own
        logger.handlers, logger.propagate = [handler], False
    try:
        yield
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate


def _torch_load(path: Path, trust: bool) -> object:
    """`torch.load` with weights_only=True; the full unpickler only when the user trusts the file."""
    try:
        with _torch_loads(weights_only=True), torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # what only the full unpickler reads, or damage
        if not trust:
            raise _refused(path, exc) from exc
    except Exception as exc:  # torch reports damage as RuntimeError, EOFError, ...
        raise _corrupt(path, exc) from exc
    try:
        with _torch_loads(weights_only=False):
            return torch.load(path, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise LoadError(
            f"{path} needs a class that cannot be imported here ({one_line(exc, short=True)}); add its module with "
            "`pythonpath` DIR and `imports` MODULE (a class defined in a script's __main__ cannot be found: "
            "save model.state_dict() and pass `arch` package.module:Class)"
        ) from exc
    except Exception as exc:  # anything else the unpickler runs into
        raise _corrupt(path, exc) from exc


def _refused(path: Path, exc: pickle.UnpicklingError) -> LoadError:
    """Why PyTorch's safe unpickler refused `path`: a class to import or a protocol it cannot read (the full
    unpickler, with `trust`, reads both), else damage."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if found is not None:
        return LoadError(
            f"{path} is a full pickle (it contains {found.group(1)}); unpickling can run arbitrary code, "
            "so semiotui loads it only with `trust`, for files you trust (safer: save model.state_dict() "
            "and pass `arch`)"
        )
    protocol = _pickle_protocol(path)
    if "Unsupported operand" in str(exc) and protocol is not None and protocol > 2:
        return LoadError(
            f"{path} is pickled with protocol {protocol}, which PyTorch reads only with its full unpickler; "
            "unpickling can run arbitrary code, so semiotui does it only with `trust`, for files you trust "
            "(safer: save it again with torch.save's default protocol)"
        )
    return _corrupt(path, exc)


def _damaged_archive(path: Path, exc: BaseException) -> LoadError:
    return LoadError(f"{path} is a truncated or damaged archive ({one_line(exc, short=True)}); copy or save it again")


def _corrupt(path: Path, exc: BaseException) -> LoadError:
    return LoadError(f"{path} is damaged or not a PyTorch file ({one_line(exc, short=True)}); copy or save it again")


def _state_dict(weights: Mapping, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict (its other values, such as a step count saved beside them, left out)."""
    state = {str(k): v for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise LoadError(f"{path} holds a dict with no tensors ({_keys(weights)}); it is not a model or state dict")
    return state


def _build_arch(arch: str, kwargs: dict[str, object]) -> nn.Module:
    """The model `arch` names (torchvision name, timm:NAME or package.module:Class), with no weights."""
    if arch.startswith(timm_models.PREFIX):
        return _construct(timm_models.factory(arch[len(timm_models.PREFIX):]), kwargs, arch)
    if ":" in arch:
        module_name, _, attr = arch.partition(":")
        if not module_name or not attr:
            raise LoadError(f"`arch` {arch}: expected a torchvision model name (resnet18) or package.module:Class")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            raise LoadError(
                f"`arch` {arch}: cannot import {module_name} ({one_line(exc, short=True)}); "
                "add its folder with `pythonpath` DIR"
            ) from exc
        except AttributeError as exc:
            raise LoadError(f"`arch` {arch}: module {module_name} has no {attr!r}") from exc
        model = _construct(factory, kwargs, arch)
        if not isinstance(model, nn.Module):
            raise LoadError(f"`arch` {arch} returned a {type(model).__name__}, not a torch.nn.Module")
        return model
    import torchvision

    known = torchvision.models.list_models()
    if arch not in known:
        import difflib

        close = difflib.get_close_matches(arch, known, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
        raise LoadError(f"`arch` {arch} is not a torchvision model name; {hint} (or use package.module:Class)")
    return _construct(lambda **kw: torchvision.models.get_model(arch, weights=None, **kw), kwargs, arch)


def _sized_by_weights(arch: str) -> bool:
    """Whether `arch` is built by a library whose `num_classes` semiotui may set from the weights (not a user's class)."""
    return arch.startswith(timm_models.PREFIX) or ":" not in arch


def _arch_meta(arch: str, model: nn.Module) -> tuple[InputSpec | None, list[str] | None, str | None]:
    """The input spec and class names that come with `arch`'s library, and a note where the user should
    know where the spec came from."""
    if arch.startswith(timm_models.PREFIX):
        spec, said = timm_models.input_spec(model)
        return spec, None, said
    if ":" in arch:
        return None, None, None
    return (*_torchvision_meta(arch), None)


def _construct(factory: object, kwargs: dict[str, object], arch: str) -> object:
    try:
        return factory(**kwargs)
    except Exception as exc:  # the constructor is the user's code
        raise LoadError(
            f"`arch` {arch} could not be built with `arch_kwargs` {json.dumps(kwargs)} ({one_line(exc, short=True)})"
        ) from exc


def _torchvision_meta(arch: str) -> tuple[InputSpec | None, list[str] | None]:
    """Input spec and class names from torchvision's weight metadata (no download needed)."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        transform = weights.transforms()
        size = transform.crop_size
        spec = InputSpec((size[0], size[-1]), tuple(transform.mean), tuple(transform.std))
    except (AttributeError, ValueError, KeyError, TypeError):  # a model without classification weights
        return None, None
    return spec, list(weights.meta.get("categories") or []) or None


def _head_size(model: nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """The number of classes of the weights' classifier when it is all that differs from `model` (else None).

    That is: one or two tensors (a weight and its bias) whose first dimension differs and the rest agrees.
    """
    own = model.state_dict()
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if not 1 <= len(wrong) <= 2 or any(state[k].shape[1:] != own[k].shape[1:] for k in wrong):
        return None
    sizes = {state[k].shape[0] for k in wrong}
    return sizes.pop() if len(sizes) == 1 else None


def _load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    """Load `state` into `model`, naming the first missing, unexpected and wrong-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own if k in state and state[k].shape != own[k].shape
    ]
    problems = [
        f"{len(items)} {kind} ({', '.join(items[:_SHOWN])}{', ...' if len(items) > _SHOWN else ''})"
        for kind, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape: file vs model", shapes))
        if items
    ]
    if problems:
        raise LoadError(
            f"the weights in {path} do not fit `arch` {arch}: {'; '.join(problems)}; check `arch`, or pass "
            'constructor arguments such as {"num_classes": N} with `arch_kwargs`'
        )
    model.load_state_dict(state, strict=False)  # only num_batches_tracked may be absent


def _load_export(path: Path, trust: bool) -> LoadedModel:
    """A torch.export program, unflattened so that its submodules are called (and hookable).

    Unless the user trusts the file, it is first checked to hold nothing torch
    would run (`engine.archive`). `ExportedProgram.module()` inlines every
    submodule into one graph, so forward hooks on its submodules never fire;
    `torch.export.unflatten` keeps the calls.
    """
    try:
        data = path.read_bytes()  # read once: torch loads the very bytes that were checked
        if not trust:
            check_archive(data)
    except UnsafeArchive as exc:
        raise LoadError(
            f"{path} is a torch.export archive that could run code when loaded: {exc}; semiotui opens "
            "such an archive only with `trust`, for files you trust"
        ) from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise _damaged_archive(path, exc) from exc
    logged: list[logging.LogRecord] = []
    try:
        with _torch_loads(weights_only=not trust), _kept_logs(logged, *_EXPORT_LOGGERS):
            program = torch.export.load(io.BytesIO(data))
        model = torch.export.unflatten(program)
    except Exception as exc:  # deserialisation reports damage in many ways
        cause = next((r.exc_info[1] for r in reversed(logged) if r.exc_info and r.exc_info[1]), exc)
        raise LoadError(
            f"{path} is a torch.export archive that cannot be loaded ({one_line(cause, short=True)})"
        ) from exc
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = [nodes[name].meta.get("val") for name in program.graph_signature.user_inputs]
    if len(inputs) != 1 or not isinstance(inputs[0], torch.Tensor) or inputs[0].dim() != 4:
        raise LoadError(f"{path} takes {len(inputs)} inputs; semiotui needs one image batch (B, C, H, W)")
    batch, _, h, w = inputs[0].shape
    loaded = _loaded(model, path, "export", None)
    loaded.layer_types = {
        p.partition("@")[0]: t
        for n in program.graph.nodes
        for p, t in n.meta.get("nn_module_stack", {}).values()
    }
    if isinstance(h, int) and isinstance(w, int):
        loaded.spec_defaults = InputSpec((h, w), IMAGENET_MEAN, IMAGENET_STD)
        loaded.normalisation_guessed = True  # an export keeps the input's size, not how it was normalised
    if isinstance(batch, int):
        if batch != 1:
            raise LoadError(
                f"{path} was exported for batches of exactly {batch} images; export it again with a dynamic "
                "batch (dynamic_shapes={'x': {0: torch.export.Dim.DYNAMIC}}) or with one example image"
            )
        loaded.batch_size = 1
        loaded.notes.append(f"{path.name} was exported for one image at a time; analysing one image per batch")
    return loaded


def _load_onnx(path: Path) -> LoadedModel:
    """An ONNX model as onnx2torch converts it, with the input size its graph fixes (ImageNet mean and std)."""
    graph = onnx_models.load(path)
    loaded = _loaded(graph.model, path, "onnx", None)
    if graph.size is not None:
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if graph.channels == 3 else (GREY_MEAN, GREY_STD)
        loaded.spec_defaults = InputSpec(graph.size, mean, std)
    layout = "channels last (B, H, W, C), given channels first" if graph.channels_last else "(B, C, H, W)"
    loaded.notes.append(f"{path.name}: input {layout} read from the graph")
    if graph.batch is not None and graph.batch > 1:
        raise LoadError(f"{path} was exported for batches of exactly {graph.batch} images; export it again with a "
                        "dynamic batch (dynamic_axes={'input': {0: 'batch'}}) or with one example image")
    if graph.batch == 1:
        loaded.batch_size = 1
        loaded.notes.append(f"{path.name} was exported for one image at a time; analysing one image per batch")
    return loaded


def _load_hf(folder: Path) -> LoadedModel:
    """A Hugging Face image classifier's folder, with its preprocessing and class names."""
    found = hf_models.load(folder)
    loaded = _loaded(found.model, folder, "hf", type(found.model).__name__)
    loaded.class_names = found.class_names
    loaded.notes += found.notes
    if found.preprocess is not None:
        try:
            loaded.spec_defaults, _ = _sidecar_values(found.preprocess)
        except ValueError as exc:
            raise LoadError(f"{folder / hf_models.PREPROCESSOR} gives no usable preprocessing ({one_line(exc, short=True)}); "
                            "fix it, or pass `input_size`, `mean` and `std`") from exc
    return loaded


def _apply_sidecar(path: Path, loaded: LoadedModel) -> None:
    """Input spec and classes from beside the model: the pruning log `semiotui prune` wrote for it (OUT.json),
    else a `preprocess.json`, as `semiotui demo --export` writes."""
    sidecar = path.with_name(SIDECAR)
    log = path.with_suffix(".json")
    pruned = _pruning_log(log) if log != path and log.is_file() else None
    if pruned is None and not sidecar.is_file():
        return
    if pruned is not None:
        sidecar, data = log, {**pruned["preprocess"], "classes": pruned.get("class_names")}
    try:
        if pruned is None:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        loaded.spec_defaults, classes = _sidecar_values(data)
        loaded.normalisation_guessed = False
    except (ValueError, OSError) as exc:
        raise LoadError(
            f"{sidecar} is not a valid preprocessing file ({one_line(exc, short=True)}); fix or remove it"
        ) from exc
    if classes is not None:
        loaded.class_names = classes
    loaded.notes.append(f"input size, mean, std and classes from {sidecar.name}")


def _pruning_log(path: Path) -> dict | None:
    """The log `semiotui prune` wrote beside a pruned model (it holds the preprocessing), or None if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None
    is_log = isinstance(data, dict) and isinstance(data.get("preprocess"), dict) and "steps" in data
    return data if is_log else None


def _sidecar_values(data: object) -> tuple[InputSpec, list[str] | None]:
    """The input spec and class names a preprocess.json holds; ValueError naming the first bad field."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object with input_size, mean and std")
    size, mean, std, classes = (data.get(key) for key in ("input_size", "mean", "std", "classes"))
    if not (_numbers(size, int) and len(size) == 2 and 1 <= min(size) <= max(size) <= MAX_INPUT_SIDE):
        raise ValueError(f"input_size must be two whole numbers from 1 to {MAX_INPUT_SIDE} [H, W], got {size!r}")
    for name, values in (("mean", mean), ("std", std)):
        if not (_numbers(values, float) and len(values) in (1, 3) and all(math.isfinite(v) for v in values)):
            raise ValueError(f"{name} must be a list of 1 or 3 finite numbers, got {values!r}")
    if len(mean) != len(std) or min(std) <= 0:
        raise ValueError(f"mean and std need one value per channel and std must be positive, got {mean!r} and {std!r}")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"classes must be a list of names, got {classes!r}")
    spec = InputSpec((size[0], size[1]), tuple(float(v) for v in mean), tuple(float(v) for v in std))
    return spec, classes


def _numbers(values: object, kind: type) -> bool:
    """A JSON list of numbers; `int` asks for whole numbers (and never booleans)."""
    allowed = (int,) if kind is int else (int, float)
    return isinstance(values, list) and all(isinstance(v, allowed) and not isinstance(v, bool) for v in values)


def _class_names(checkpoint: Mapping) -> list[str] | None:
    """Class names a checkpoint stores under 'classes' or 'class_names'."""
    for key in ("classes", "class_names"):
        names = checkpoint.get(key)
        if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
            return list(names)
    return None


def _loaded(model: nn.Module, path: Path, fmt: str, arch: str | None) -> LoadedModel:
    info = ModelInfo(str(path), fmt, arch, sum(p.numel() for p in model.parameters()))
    return LoadedModel(model=model, info=info, spec_defaults=None)


def _first_conv_channels(model: nn.Module) -> int | None:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else None


def _keys(d: Mapping) -> str:
    keys = [str(k) for k in d]
    return "keys: " + ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "") if keys else "empty"

