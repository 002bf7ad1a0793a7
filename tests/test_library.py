"""The README's library example, run as written on the bundled demo: the engine alone, no interface."""

import re
from pathlib import Path

import torch

from semiotui.engine.demo import demo_samples, load_demo_model, preprocess

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_library_example_runs_and_states_its_finding(capsys):
    code = re.search(r"## As a library.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    model = load_demo_model()
    images = torch.stack([preprocess(image) for image, _ in demo_samples("val", 24)])
    loader = [images[:12], images[12:]]
    scope = {"model": model, "images": images, "loader": loader}
    exec(compile(code, "README.md", "exec"), scope)
    assert list(scope["maps"]) == scope["layers"] and scope["bits"].shape == (24,)
    steps = scope["steps"]
    assert steps.count == 24 and steps.control is not None and steps.control.draws == 8
    printed = capsys.readouterr().out
    assert "shuffled weights" in printed and "images whose two maps are non-empty" in printed
