"""Opening a saved report folder as a workspace: browse an analysis without the model or a GPU."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import numpy as np

from .analysis import AnalysisResult, AnalysisSettings, ImageResult
from .control import ControlResult, ControlSettings
from .flow import Flow
from .layers import LayerIndex, LayerInfo
from .workspace import InputSpec, ModelInfo, Workspace

NEEDED = ("report.json", "entropy.csv", "maps.npz")


class SavedImages:
    """The images of a saved report: names and labels of all, pixels of those whose maps were kept."""

    def __init__(self, names: list[str], labels: list[int], class_names: list[str] | None,
                 skipped: list[tuple[str, str]], pictures: dict[int, np.ndarray]) -> None:
        self.names = names
        self.labels = labels
        self.class_names = class_names
        self.skipped = skipped
        self.warnings: list[str] = []
        self._pictures = pictures

    def __len__(self) -> int:
        return len(self.names)

    def image(self, i: int) -> np.ndarray | None:
        """Image `i` as the model saw it, or None when the report kept no maps for it."""
        return self._pictures.get(i)


def open_report(directory: str | Path) -> Workspace:
    """The workspace of a report folder written by `semiotui report` (or the interface's export)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass a report folder written by semiotui report")
    missing = [name for name in NEEDED if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a complete semiotui report: {', '.join(missing)} missing "
                                "(write it with semiotui report, including the json and csv formats)")
    try:
        data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        with (folder / "entropy.csv").open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        with np.load(folder / "maps.npz") as npz:
            arrays = {key: npz[key] for key in npz.files}
        control_rows = None
        if (folder / "control.csv").is_file():
            with (folder / "control.csv").open(newline="", encoding="utf-8") as f:
                control_rows = list(csv.reader(f))
        return _workspace(folder, data, rows, arrays, control_rows)
    except (KeyError, ValueError, IndexError, TypeError, OSError) as exc:
        raise ValueError(f"{folder} holds a damaged or incompatible report ({type(exc).__name__}: {exc})") from None


def _workspace(folder: Path, data: dict, rows: list[list[str]], arrays: dict[str, np.ndarray],
               control_rows: list[list[str]] | None) -> Workspace:
    layers = [layer["name"] for layer in data["layers"]]
    if rows[0][1:] != layers:
        raise ValueError("entropy.csv and report.json name different layers")
    if len(rows) - 1 != len(data["images"]):
        raise ValueError("entropy.csv and report.json list different numbers of images")
    s = data["settings"]
    target = s["target"]
    settings = AnalysisSettings(method=s["method"], estimator=s["estimator"], levels=s["levels"],
                                upsample=s["upsample"], normalized=s.get("normalized", False),
                                target=target, batch_size=s["batch_size"], device="cpu",
                                count_empty=s.get("count_empty", False))
    maps: dict[int, dict[str, np.ndarray]] = {}
    pictures: dict[int, np.ndarray] = {}
    for key, array in arrays.items():
        index, _, layer = key.partition("/")
        if layer == "input":
            pictures[int(index)] = array
        else:
            maps.setdefault(int(index), {})[layer] = array.astype(np.float32)
    images = []
    for i, (image, row) in enumerate(zip(data["images"], rows[1:])):
        empty = set(image.get("empty", []))
        images.append(ImageResult(i, image["path"], image["label"], image["predicted"], image["confidence"],
                                  image["target"], _floats(row[1:]), maps.get(i),
                                  empty=np.array([name in empty for name in layers]),
                                  top=tuple(image.get("top5", ()))))
    by_name = {name: j for j, name in enumerate(layers)}
    flow = None
    if all("parent" in layer for layer in data["layers"]):
        parents = [None if layer["parent"] is None else by_name[layer["parent"]] for layer in data["layers"]]
        flow = Flow(layers, [tuple(by_name[n] for n in layer.get("inputs") or ()) for layer in data["layers"]],
                    parents, [not layer.get("branch", False) for layer in data["layers"]])
    analysis = data["analysis"]
    result = AnalysisResult(layers, settings, s["device"], images, cancelled=analysis["cancelled"],
                            seconds=analysis["seconds"], flow=flow, scores=data["model"].get("scores", "logits"),
                            classes=analysis.get("classes", 0))
    result.stats.update(result.entropy)
    if control_rows is not None and data.get("control"):
        result.control = _control(data["control"], layers, control_rows, [img["path"] for img in data["images"]])
    index = LayerIndex(LayerInfo(**{**info, "output_shape": _tuple(info["output_shape"]),
                                    "returns": tuple(info["returns"])}) for info in data["index"])
    class_names = data["model"].get("classes")
    m = data["model"]
    return Workspace(
        model=None,
        info=ModelInfo(m["path"], m["format"], m["arch"], m["parameters"]),
        spec=InputSpec(tuple(s["input_size"]), tuple(s["mean"]), tuple(s["std"])),
        index=index,
        layers=list(dict.fromkeys(name.partition("#")[0] for name in layers)),
        images=SavedImages([img["path"] for img in data["images"]],
                           [-1 if img["label"] is None else img["label"] for img in data["images"]],
                           class_names, [(x["path"], x["reason"]) for x in data["skipped"]], pictures),
        settings=settings,
        class_names=class_names,
        warnings=[f"opened a saved report from {folder} (semiotui {data['semiotui']}, {data['created']}): "
                  "no model, so nothing is recomputed"],
        result=result,
        control=None,  # the saved control, if any, is in `result`
        origin=f"{folder.absolute()} · {datetime.fromisoformat(data['created']):%Y-%m-%d %H:%M %Z}".rstrip(),
        inputs=[str(folder)],
    )


def _floats(cells: list[str]) -> np.ndarray:
    """A CSV row of entropies; a blank cell is an empty map (NaN)."""
    return np.array([float(v) if v else np.nan for v in cells])


def _control(meta: dict, layers: list[str], rows: list[list[str]], paths: list[str]) -> ControlResult:
    """The control networks' entropies from control.csv (seed, image, one column per layer)."""
    if rows[0][2:] != layers:
        raise ValueError("control.csv and report.json name different layers")
    seeds = meta["seeds"]
    per_seed = {seed: [] for seed in seeds}
    names = []
    for row in rows[1:]:
        per_seed[int(row[0])].append(_floats(row[2:]))
        if int(row[0]) == seeds[0]:
            names.append(row[1])
    if names != paths[: len(names)] or len({len(v) for v in per_seed.values()}) != 1:
        raise ValueError("control.csv does not match the report's images")
    entropy = np.stack([np.stack(per_seed[seed]) for seed in seeds])
    return ControlResult(
        settings=ControlSettings(draws=meta["draws"], images=meta["images"], seed=seeds[0]), layers=layers,
        rows=list(range(len(names))), entropy=entropy, empty=np.isnan(entropy),
        shuffled=meta["shuffled_parameters"], kept=meta["kept_parameters"], seeds=seeds,
        cancelled=meta.get("cancelled", False))


def _tuple(shape: list[int] | None) -> tuple[int, ...] | None:
    return None if shape is None else tuple(shape)
