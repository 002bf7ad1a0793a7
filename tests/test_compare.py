"""Two models side by side: the bundled demo against a model pruned from it, and two saved report folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from helpers import only_error_line, write_tiny_inputs

from semiotui.engine.demo import export_demo
from semiotui.tui.cli import main

pytestmark = pytest.mark.slow  # prunes and analyses the demo twice


@pytest.fixture(scope="module")
def demo_and_pruned(tmp_path_factory) -> Path:
    """The exported demo (model and images) and a model pruned from it by `semiotui prune`."""
    folder = tmp_path_factory.mktemp("compare")
    export_demo(folder / "demo", count=40)
    code = main(["prune", str(folder / "demo" / "demo_model.pt"), "--trust", "--images", str(folder / "demo"),
                 "-o", str(folder / "pruned.pt"), "--max-steps", "1", "--finetune-batches", "0", "--tolerance", "1"])
    assert code == 0
    return folder


def test_compare_the_demo_with_a_model_pruned_from_it(demo_and_pruned, capsys):
    folder = demo_and_pruned
    out = folder / "cmp"
    code = main(["compare", str(folder / "demo" / "demo_model.pt"), str(folder / "pruned.pt"), "--trust",
                 "--images", str(folder / "demo"), "--no-control", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads((out / "report.json").read_text())
    assert data["kind"] == "comparison" and data["images"] == 40
    a, b = data["models"]
    assert b["parameters"] < a["parameters"] and a["accuracy"]["images"] == 40
    assert [layer["name"] for layer in data["layers"]][0] == "features.conv1"
    assert "Their entropy" in " ".join(data["summary"])
    html = (out / "report.html").read_text()
    assert "demo_model.pt" in html and "pruned.pt" in html and html.count("data:image/png;base64") >= 2
    assert "comparison written to" in capsys.readouterr().err


def test_compare_two_saved_report_folders_without_the_models(demo_and_pruned, capsys):
    folder = demo_and_pruned
    for name, model in (("a", folder / "demo" / "demo_model.pt"), ("b", folder / "pruned.pt")):
        assert main(["report", str(model), "--trust", "--images", str(folder / "demo"), "--no-control",
                     "--formats", "json", "csv", "-o", str(folder / name)]) == 0
    assert main(["compare", str(folder / "a"), str(folder / "b"), "-o", str(folder / "ab")]) == 0
    data = json.loads((folder / "ab" / "report.json").read_text())
    # the per-layer test, recomputed from the two entropy.csv files
    tables = []
    for name in ("a", "b"):
        rows = (folder / name / "entropy.csv").read_text().splitlines()[1:]
        tables.append(np.array([[float(v) if v else np.nan for v in row.split(",")[1:]] for row in rows]))
    ha, hb = tables
    both = np.isfinite(ha[:, -1]) & np.isfinite(hb[:, -1])
    p = scipy_stats.wilcoxon(ha[both, -1] - hb[both, -1]).pvalue
    last = data["layers"][-1]
    assert last["pairs"] == both.sum() and last["p_value"] >= p - 1e-12  # Holm only raises a p-value
    assert last["mean"] == pytest.approx([ha[both, -1].mean(), hb[both, -1].mean()])
    assert main(["compare", str(folder / "a"), str(folder / "pruned.pt"), "-o", str(folder / "mixed")]) == 1
    assert "not one of each" in capsys.readouterr().err


TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def tiny_reports(tmp_path_factory) -> Path:
    """Reports of one TinyNet on the same files: as given, under other class folders, and with LayerCAM."""
    folder = tmp_path_factory.mktemp("tiny")
    write_tiny_inputs(folder, images=8, size=16, classes=2)
    renamed = folder / "renamed"
    for path in (folder / "images").rglob("*.png"):  # the same files, in folders of other names
        target = renamed / f"class_{path.parent.name}" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    runs = {"a": (folder / "images", "gradcam"), "renamed": (renamed, "gradcam"),
            "layercam": (folder / "images", "layercam")}
    for name, (images, method) in runs.items():
        assert main(["report", str(folder / "tiny.pth"), "--arch", "helpers:TinyNet", "--pythonpath", str(TESTS),
                     "--images", str(images), "--input-size", "16", "16", "--device", "cpu", "--no-control",
                     "--method", method, "--formats", "json", "csv", "-o", str(folder / f"report-{name}")]) == 0
    return folder


def test_the_same_files_in_other_class_folders_are_paired_by_file_name(tiny_reports, capsys):
    capsys.readouterr()
    assert main(["compare", str(tiny_reports / "report-a"), str(tiny_reports / "report-renamed"), "-o",
                 str(tiny_reports / "by-name")]) == 0
    data = json.loads((tiny_reports / "by-name" / "report.json").read_text())
    assert data["images"] == 8 and data["paired_by"] == "file name"
    assert "8 images in common (paired by file name)" in capsys.readouterr().err


def test_analyses_made_with_another_method_are_compared_only_with_force(tiny_reports, capsys):
    capsys.readouterr()
    status = main(["compare", str(tiny_reports / "report-a"), str(tiny_reports / "report-layercam"), "-o",
                   str(tiny_reports / "methods")])
    line = only_error_line(capsys.readouterr().err)
    assert status == 1 and "method gradcam vs layercam" in line and "--force" in line
    assert not (tiny_reports / "methods").exists()
    assert main(["compare", str(tiny_reports / "report-a"), str(tiny_reports / "report-layercam"), "-o",
                 str(tiny_reports / "methods"), "--force"]) == 0
    summary = json.loads((tiny_reports / "methods" / "report.json").read_text())["summary"]
    assert summary[0].startswith("Measured differently") and "method gradcam vs layercam" in summary[0]
