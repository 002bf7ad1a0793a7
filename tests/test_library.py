"""The README's library examples, run as written on the bundled demo: the engine alone, no interface."""

import json
import re
from pathlib import Path

import pytest
import torch

from semiotui.engine.demo import demo_samples, export_demo, load_demo_model, preprocess

README = Path(__file__).resolve().parents[1] / "README.md"


def library_examples() -> list[str]:
    section = re.search(r"## As a library\n(.*?)\n## ", README.read_text(), re.S).group(1)
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.slow  # runs the control
def test_the_readme_library_example_runs_and_states_its_finding(capsys):
    model = load_demo_model()
    images = torch.stack([preprocess(image) for image, _ in demo_samples("val", 24)])
    loader = [images[:12], images[12:]]
    scope = {"model": model, "images": images, "loader": loader}
    exec(compile(library_examples()[0], "README.md", "exec"), scope)
    assert list(scope["maps"]) == scope["layers"] and scope["bits"].shape == (24,)
    steps = scope["steps"]
    assert steps.count == 24 and steps.control is not None and steps.control.draws == 8
    printed = capsys.readouterr().out
    assert "shuffled weights" in printed and "over the 24 of 24 images" in printed


@pytest.mark.slow  # prunes, with fine-tuning
def test_the_readme_goes_from_a_model_file_and_images_to_a_report_and_a_pruned_model(tmp_path, monkeypatch):
    export_demo(tmp_path / "demo", count=40)
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(library_examples()[1], "README.md", "exec"), scope)
    assert {"report.html", "report.md", "report.json", "entropy.csv", "control.csv"} <= {
        p.name for p in (tmp_path / "report").iterdir()}
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert len(report["images"]) == 40 and report["control"] is not None
    pruned = torch.load(tmp_path / "small.pt", weights_only=False)
    log = json.loads((tmp_path / "small.json").read_text())
    assert sum(p.numel() for p in pruned.parameters()) == log["final"]["parameters"] < log["original"]["parameters"]
    assert log["preprocess"]["input_size"] == [64, 64]
