"""Opening a saved report folder as a workspace: browse an analysis without the model or a GPU.

A report folder may come from anyone, so what it holds is checked before it is
used: report.json against the schema semiotui writes (its text made `readable`),
entropy.csv and control.csv for finite numbers (a blank cell is an empty map), and each array of maps.npz against the shape the
report gives it, from its header, before its data is read. What maps.npz may
expand to is bounded (`MAX_MAPS_BYTES`): its 3 MB can hold gigabytes of zeros;
so is the text read (`MAX_TEXT_BYTES`): a sparse file takes no disk.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from .analysis import AnalysisResult, AnalysisSettings, Batch, ImageResult
from .control import ControlResult, ControlSettings
from .errors import InvalidValue, MissingPath, one_line
from .flow import Flow
from .layers import LayerIndex, LayerInfo
from .names import readable, shown
from .reports.csv_files import spreadsheet_text
from .saliency import module_of
from .workspace import InputSpec, ModelInfo, Workspace

NEEDED = ("report.json", "entropy.csv", "maps.npz")
MAX_MAPS_BYTES = 1 << 30  # maps.npz read into memory at most (a report's default maps take a few MB)
MAX_TEXT_BYTES = 1 << 30  # each of report.json and the CSV files (a million images take a few hundred MB)

# What report.json holds, as semiotui writes it: a type, None (null), [kind] (a list of kind),
# {key: kind} (an object with at least these keys), or a tuple of alternatives. Floats are finite.
SCHEMA = {
    "semiotui": str,
    "created": str,
    "model": {"path": (str, None), "format": str, "arch": (str, None), "parameters": int, "classes": ([str], None)},
    "settings": {"method": str, "estimator": str, "levels": int, "upsample": bool, "target": (str, int),
                 "device": str, "input_size": [int], "mean": [float], "std": [float], "batch_size": int},
    "analysis": {"cancelled": bool, "seconds": float},
    "images": [{"path": str, "label": (int, None), "predicted": int, "confidence": float, "target": int}],
    "skipped": [{"path": str, "reason": str}],
    "layers": [{"name": str}],
    "index": [{"name": str, "type": str, "depth": int, "leaf": bool, "calls": int, "output_shape": ([int], None),
               "parameters": int, "spatial": bool, "default": bool, "returns": [int]}],
}


class SavedImages:
    """The images of a saved report: names and labels of all, pixels of those whose maps were kept."""

    def __init__(self, names: list[str], labels: list[int], class_names: list[str] | None,
                 skipped: list[tuple[str, str]], pictures: dict[int, np.ndarray]) -> None:
        self.names = names
        self.labels = labels
        self.class_names = class_names
        self.skipped = skipped
        self.label_source: str | None = None
        self.warnings: list[str] = []
        self._pictures = pictures

    def __len__(self) -> int:
        return len(self.names)

    def image(self, i: int) -> np.ndarray | None:
        """Image `i` as the model saw it, or None when the report kept no maps for it."""
        return self._pictures.get(i)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Never: a report keeps thumbnails of a few images, not the images the model analysed."""
        raise InvalidValue("a saved report holds no images to analyse; analyse the model with its images")

    def example(self) -> torch.Tensor:
        """Never, as `batches`."""
        raise InvalidValue("a saved report holds no images to analyse; analyse the model with its images")

    def subset(self, indices: Sequence[int]) -> SavedImages:
        """The images at `indices`, in that order, with the pictures kept of them."""
        picked = list(indices)
        pictures = {k: self._pictures[i] for k, i in enumerate(picked) if i in self._pictures}
        return SavedImages([self.names[i] for i in picked], [self.labels[i] for i in picked], self.class_names,
                           self.skipped, pictures)


def open_report(directory: str | Path) -> Workspace:
    """The workspace of a report folder written by `semiotui report` (or the interface's export)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise MissingPath(f"{folder} is not a folder; pass a report folder written by semiotui report")
    missing = [name for name in NEEDED if not (folder / name).is_file()]
    if missing:
        raise MissingPath(f"{folder} is not a complete semiotui report: {', '.join(missing)} missing "
                          "(write it with semiotui report, including the json and csv formats)")
    try:
        data = _checked(json.loads(_text(folder / "report.json")))
        rows = list(csv.reader(io.StringIO(_text(folder / "entropy.csv"), newline="")))
        control_rows = None
        if data.get("control") and (folder / "control.csv").is_file():
            control_rows = list(csv.reader(io.StringIO(_text(folder / "control.csv"), newline="")))
        return _workspace(folder, data, rows, control_rows)
    except (KeyError, ValueError, IndexError, TypeError, OSError, EOFError, RecursionError, csv.Error,
            zipfile.BadZipFile, zlib.error) as exc:
        raise InvalidValue(f"{folder} holds a damaged or incompatible report "
                           f"({type(exc).__name__}: {one_line(exc, short=True)})") from None


def _text(path: Path) -> str:
    """One of the report's text files, refused past `MAX_TEXT_BYTES`: a sparse file claims a terabyte and takes no
    disk, and a file of the system's (a link may lead to one) says it holds nothing and may never end."""
    with path.open("rb") as f:
        data = f.read(MAX_TEXT_BYTES + 1) if os.fstat(f.fileno()).st_size <= MAX_TEXT_BYTES else None
    if data is None or len(data) > MAX_TEXT_BYTES:
        raise ValueError(f"{path.name} is larger than the {MAX_TEXT_BYTES // 2**30} GiB semiotui open reads; "
                         "it is not a report's")
    return data.decode("utf-8")


def _checked(data: object) -> dict:
    """report.json's content, its text made readable, or ValueError naming the first part unlike SCHEMA."""
    if not isinstance(data, dict):
        raise ValueError("report.json holds no JSON object")
    wrong = next((key for key, kind in SCHEMA.items() if key not in data or not _matches(data[key], kind)), None)
    if wrong is not None:
        raise ValueError(f"report.json: {wrong!r} is missing or not what semiotui writes")
    return _readable_text(data)


def _matches(value: object, kind: object) -> bool:
    """Whether `value` is of `kind`, as SCHEMA describes kinds."""
    if kind is None:
        return value is None
    if isinstance(kind, tuple):
        return any(_matches(value, k) for k in kind)
    if isinstance(kind, list):
        return isinstance(value, list) and all(_matches(v, kind[0]) for v in value)
    if isinstance(kind, dict):
        return isinstance(value, dict) and all(k in value and _matches(value[k], sub) for k, sub in kind.items())
    if isinstance(value, bool):  # JSON's true is no number
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def _readable_text(value: object) -> object:
    """`value` with every string in it `readable` (JSON can spell lone surrogates and control characters)."""
    if isinstance(value, str):
        return readable(value)
    if isinstance(value, list):
        return [_readable_text(v) for v in value]
    if isinstance(value, dict):
        return {readable(k): _readable_text(v) for k, v in value.items()}
    return value


def _workspace(folder: Path, data: dict, rows: list[list[str]], control_rows: list[list[str]] | None) -> Workspace:
    layers = [layer["name"] for layer in data["layers"]]
    if not rows or rows[0][1:] != [spreadsheet_text(name) for name in layers]:
        raise ValueError("entropy.csv and report.json name different layers")
    if len(rows) - 1 != len(data["images"]):
        raise ValueError("entropy.csv and report.json list different numbers of images")
    s = data["settings"]
    if len(s["input_size"]) != 2 or min(s["input_size"]) < 1:
        raise ValueError(f"report.json: the input size {shown(str(s['input_size']))} is not a height and a width")
    settings = AnalysisSettings(method=s["method"], estimator=s["estimator"], levels=s["levels"],
                                upsample=s["upsample"], normalized=bool(s.get("normalized", False)),
                                target=s["target"], batch_size=s["batch_size"], device="cpu",
                                count_empty=bool(s.get("count_empty", False)))
    settings.check()
    index = _layer_index(data["index"], layers)
    maps: dict[int, dict[str, np.ndarray]] = {}
    pictures: dict[int, np.ndarray] = {}
    for key, array in _read_maps(folder / "maps.npz", len(data["images"]), layers, tuple(s["input_size"])).items():
        image, _, layer = key.partition("/")
        if layer == "input":
            pictures[int(image)] = array
        else:
            maps.setdefault(int(image), {})[layer] = array.astype(np.float32)
    images = []
    for i, (image, row) in enumerate(zip(data["images"], rows[1:])):
        empty = set(image.get("empty") or ())
        top = image.get("top5") or ()
        images.append(ImageResult(i, image["path"], image["label"], image["predicted"], image["confidence"],
                                  image["target"], _entropies(row[1:], len(layers), f"entropy.csv: row {i + 1}",
                                             settings.entropy_range),
                                  maps.get(i), empty=np.array([name in empty for name in layers]),
                                  top=tuple(int(c) for c in top[:5])))
    analysis = data["analysis"]
    result = AnalysisResult(layers, settings, s["device"], images, cancelled=analysis["cancelled"],
                            seconds=analysis["seconds"], flow=_flow(data["layers"], layers),
                            scores=str(data["model"].get("scores", "logits")), classes=int(analysis.get("classes", 0)),
                            total=analysis["total"] if isinstance(analysis.get("total"), int) else None)
    result.stats.update(result.entropy)
    result.skipped = [(x["path"], x["reason"]) for x in data["skipped"]]
    result.failed = analysis["failed"] if isinstance(analysis.get("failed"), str) else None
    if control_rows is not None:
        result.control = _control(data["control"], layers, control_rows, [img["path"] for img in data["images"]],
                                  settings.entropy_range)
    class_names = data["model"].get("classes")
    m = data["model"]
    return Workspace(
        model=None,
        info=ModelInfo(m["path"], m["format"], m["arch"], m["parameters"]),
        spec=InputSpec(tuple(s["input_size"]), tuple(s["mean"]), tuple(s["std"])),
        index=index,
        layers=list(dict.fromkeys(module_of(name) for name in layers)),
        images=SavedImages([img["path"] for img in data["images"]],
                           [-1 if img["label"] is None else img["label"] for img in data["images"]],
                           class_names, result.skipped, pictures),
        settings=settings,
        class_names=class_names,
        warnings=[f"opened a saved report from {folder} (semiotui {data['semiotui']}, {data['created']}): "
                  "no model, so nothing is recomputed"],
        result=result,
        control=None,  # the saved control, if any, is in `result`
        origin=f"{folder.absolute()} · {datetime.fromisoformat(data['created']):%Y-%m-%d %H:%M %Z}".rstrip(),
    )


def _tuple(shape: list[int] | None) -> tuple[int, ...] | None:
    return None if shape is None else tuple(shape)


def _layer_index(entries: list[dict], layers: list[str]) -> LayerIndex:
    """The saved layer index, refused unless it is as `index_layers` builds it and names every measured map.

    A depth, or a number of calls, that the names and returns do not bear out could
    make the interface draw (or list) a billion of something.
    """
    index = LayerIndex(LayerInfo(**{**info, "output_shape": _tuple(info["output_shape"]),
                                    "returns": tuple(info["returns"])}) for info in entries)
    consistent = all(info.depth == info.name.count(".") + 1 and info.calls == len(info.returns)
                     and info.parameters >= 0 for info in index)
    modules = [module_of(name) for name in layers]
    if not consistent or not all(m in index and name in index[m].map_names for m, name in zip(modules, layers)):
        raise ValueError("report.json: the layer index is not one semiotui writes")
    return index


def _entropies(cells: list[str], layers: int, where: str, within: tuple[float, float]) -> np.ndarray:
    """One row of entropies: finite numbers in the estimator's range `within`, or a blank cell for an empty map (NaN)."""
    values = np.array([float(v) for v in cells if v]) if len(cells) == layers else None
    low, high = within
    if (values is None or not np.isfinite(values).all() or (values < low - 1e-9).any()
            or (values > high + 1e-9).any()):
        raise ValueError(f"{where} holds a value that is not a finite number of bits in the estimator's range, "
                         f"or not {layers} of them")
    return np.array([float(v) if v else np.nan for v in cells])


def _flow(entries: list[dict], layers: list[str]) -> Flow | None:
    """The saved data flow (each layer's parent on the main path, its inputs, whether it is a branch)."""
    if not all("parent" in entry for entry in entries):
        return None  # a report from before steps followed the data flow: the forward order
    position = {name: j for j, name in enumerate(layers)}
    parents = [None if entry["parent"] is None else position[entry["parent"]] for entry in entries]
    inputs = [tuple(position[name] for name in entry.get("inputs") or ()) for entry in entries]
    if any(p is not None and p >= j for j, p in enumerate(parents)) or any(i >= j for j, c in enumerate(inputs) for i in c):
        raise ValueError("report.json: a layer consumes one that comes after it")
    return Flow(list(layers), inputs, parents, [not entry.get("branch", False) for entry in entries])


def _control(meta: dict, layers: list[str], rows: list[list[str]], paths: list[str],
             within: tuple[float, float]) -> ControlResult:
    """The control networks' entropies from control.csv (seed, image, one column per layer), as report.json says.

    report.json names the images (`rows`: their positions among the report's) and each network's empty maps;
    a report from before the sample was spread across the classes holds the first images and no empty list.
    """
    seeds = [int(seed) for seed in meta["seeds"]]
    count = int(meta["images"])
    positions = meta.get("rows", list(range(count)))
    if not rows or rows[0][2:] != [spreadsheet_text(name) for name in layers]:
        raise ValueError("control.csv and report.json name different layers")
    if len(seeds) < 2 or not 1 <= count <= len(paths) or len(rows) - 1 != len(seeds) * count:
        raise ValueError("control.csv does not hold the networks and images report.json says it does")
    if (not isinstance(positions, list) or len(positions) != count or len(set(positions)) != count
            or not all(type(k) is int and 0 <= k < len(paths) for k in positions)):
        raise ValueError("report.json: the control's rows are not distinct images of the report")
    entropy = np.empty((len(seeds), count, len(layers)))
    for k, row in enumerate(rows[1:]):
        draw, image = divmod(k, count)
        if row[:2] != [str(seeds[draw]), spreadsheet_text(paths[positions[image]])]:
            raise ValueError(f"control.csv: row {k + 1} is not network {shown(str(seeds[draw]))} on "
                             f"{shown(paths[positions[image]])}")
        entropy[draw, image] = _entropies(row[2:], len(layers), f"control.csv: row {k + 1}", within)
    empty = np.isnan(entropy)
    listed = meta.get("empty")
    if listed is not None:
        if (not isinstance(listed, list) or len(listed) != len(seeds)
                or any(not isinstance(network, list) or len(network) != count for network in listed)):
            raise ValueError("report.json: the control's empty maps do not match its networks and images")
        for draw, network in enumerate(listed):
            for image, columns in enumerate(network):
                if not isinstance(columns, list) or not all(type(j) is int and 0 <= j < len(layers)
                                                            for j in columns):
                    raise ValueError("report.json: the control's empty maps name layers it does not have")
                empty[draw, image, columns] = True
    return ControlResult(
        settings=ControlSettings(draws=len(seeds), images=count, seed=int(meta.get("sample_seed", 0))),
        layers=layers, rows=positions, entropy=entropy, empty=empty,
        shuffled=int(meta["shuffled_parameters"]), kept=int(meta["kept_parameters"]), seeds=seeds,
        cancelled=bool(meta.get("cancelled", False)))


def _read_maps(path: Path, images: int, layers: list[str], size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The arrays of maps.npz by key, each read only once its header matches what the report says it is.

    An image's picture is uint8 at the input size; a map is a 2-D float16 thumbnail,
    no larger than the input or a thumbnail's side, and finite.
    """
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        expands_to = sum(m.file_size for m in members)  # zipfile reads no more than a member declares
        if expands_to > MAX_MAPS_BYTES:
            raise ValueError(f"maps.npz would take {expands_to / 2**30:.1f} GiB in memory, more than the "
                             f"{MAX_MAPS_BYTES // 2**30} GiB semiotui open reads; it is not a report's maps")
        side = max(*size, AnalysisSettings.thumbnail)
        arrays = {}
        for member in members:
            key = readable(member.filename.removesuffix(".npy"))  # as the layer names of report.json
            image, _, name = key.partition("/")
            if not (image.isdigit() and int(image) < images):
                raise ValueError(f"maps.npz: {shown(key)} is no image of the report")
            if name == "input":
                arrays[key] = _read_array(archive, member, key, np.uint8, lambda shape: shape == (*size, 3))
            elif name in layers:
                arrays[key] = _read_array(archive, member, key, np.float16,
                                          lambda shape: len(shape) == 2 and 1 <= min(shape) and max(shape) <= side)
                if not np.isfinite(arrays[key]).all():
                    raise ValueError(f"maps.npz: {shown(key)} holds NaN or infinite values")
            else:
                raise ValueError(f"maps.npz: {shown(key)} is no layer of the report")
        return arrays


def _read_array(archive: zipfile.ZipFile, member: zipfile.ZipInfo, key: str, dtype: type,
                fits: Callable[[tuple[int, ...]], bool]) -> np.ndarray:
    """The .npy member `key`, read after its header declares `dtype` and a shape that `fits`."""
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"maps.npz: {shown(key)} is in .npy format {version}, which semiotui does not write")
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, declared = header(f)
        if declared != np.dtype(dtype) or not fits(shape):
            raise ValueError(f"maps.npz: {shown(key)} holds {shown(str(declared))} {shown(str(shape))}, not what the "
                             "report says it holds")
        size = math.prod(shape) * declared.itemsize
        data = f.read(size)
    if len(data) != size:
        raise ValueError(f"maps.npz: {shown(key)} is cut short")
    return np.frombuffer(data, declared).reshape(shape, order="F" if fortran else "C")
