"""Opening a saved report folder as a workspace: browse an analysis without the model or a GPU."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import numpy as np

from .analysis import AnalysisResult, AnalysisSettings, ImageResult
from .layers import LayerIndex, LayerInfo
from .report import spreadsheet_text
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
        return _workspace(folder, data, rows, arrays)
    except (KeyError, ValueError, IndexError, TypeError, OSError) as exc:
        raise ValueError(f"{folder} holds a damaged or incompatible report ({type(exc).__name__}: {exc})") from None


def _workspace(folder: Path, data: dict, rows: list[list[str]], arrays: dict[str, np.ndarray]) -> Workspace:
    layers = [layer["name"] for layer in data["layers"]]
    if rows[0][1:] != [spreadsheet_text(name) for name in layers]:
        raise ValueError("entropy.csv and report.json name different layers")
    if len(rows) - 1 != len(data["images"]):
        raise ValueError("entropy.csv and report.json list different numbers of images")
    s = data["settings"]
    target = s["target"]
    settings = AnalysisSettings(method=s["method"], estimator=s["estimator"], levels=s["levels"],
                                upsample=s["upsample"], normalized=s.get("normalized", False),
                                target=target, batch_size=s["batch_size"], device="cpu")
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
        images.append(ImageResult(i, image["path"], image["label"], image["predicted"], image["confidence"],
                                  image["target"], np.array([float(v) for v in row[1:]]), maps.get(i)))
    result = AnalysisResult(layers, settings, s["device"], images, cancelled=data["analysis"]["cancelled"],
                            seconds=data["analysis"]["seconds"])
    result.stats.update(result.entropy)
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
        origin=f"{folder.absolute()} · {datetime.fromisoformat(data['created']):%Y-%m-%d %H:%M %Z}".rstrip(),
    )


def _tuple(shape: list[int] | None) -> tuple[int, ...] | None:
    return None if shape is None else tuple(shape)
