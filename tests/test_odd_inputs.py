"""Odd inputs of issue 14, item 11: each gets a clear answer instead of a hang, a crash or silence."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from helpers import TinyNet, write_tiny_inputs
from torch import nn

from semiotui.engine import AnalysisSettings, analyse
from semiotui.engine.data import ImageSource
from semiotui.engine.layers import index_layers
from semiotui.engine.loading import LoadError, load_model
from semiotui.engine.reports.write import write_report
from semiotui.engine.workspace import InputSpec, ModelInfo, Workspace
from semiotui.tui.cli import main

TESTS = Path(__file__).parent
SPEC = InputSpec((16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.fixture
def inputs(tmp_path) -> Path:
    return write_tiny_inputs(tmp_path, images=6, size=16, classes=2)


@pytest.mark.slow  # the command in a subprocess
def test_a_fifo_as_the_model_is_refused_at_once(inputs, tmp_path):
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    run = subprocess.Popen([sys.executable, "-m", "semiotui", "report", str(fifo), "--images", str(inputs / "images"),
                            "-o", str(tmp_path / "out"), "--device", "cpu"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = run.communicate(timeout=90)  # opening a FIFO for reading waits for a writer: forever
    finally:
        run.kill()
    assert run.returncode == 1
    assert re.fullmatch(r"semiotui: error: .*model.pt is not a regular file.*\n", err), err


class SlashNet(nn.Module):
    """A conv whose module name holds a slash (nn.Module allows it), as converted models have."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module("block/conv", nn.Conv2d(3, 4, 3, padding=1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(getattr(self, "block/conv")(x))


def test_a_layer_name_with_a_slash_gets_a_safe_tile_file(tmp_path):
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)) for _ in range(3)]
    images = ImageSource.from_images(pictures, SPEC)
    model = SlashNet().eval()
    index = index_layers(model, next(images.batches(1)).images)
    settings = AnalysisSettings(batch_size=3, device="cpu")
    workspace = Workspace(model, ModelInfo("slash.pt", "pickle", None, 0), SPEC, index, index.select(), images,
                          settings)
    result = analyse(model, images.batches(3), workspace.layers, settings, keep_maps=1)
    assert "block/conv" in result.layers
    out = write_report(tmp_path / "rep", workspace, result)
    tiles = sorted(p.name for p in (out / "images").iterdir() if p.suffix == ".png")
    assert len(tiles) == 1 + len(result.layers) and all(p.is_file() for p in (out / "images").iterdir())
    markdown = (out / "report.md").read_text()
    for link in re.findall(r"\]\((images/[^ )]+)", markdown):
        assert (out / link).is_file(), link


def test_an_image_given_twice_or_inside_a_folder_also_given_is_analysed_once(inputs):
    folder = inputs / "images"
    one = next(folder.rglob("*.png"))
    (inputs / "link").symlink_to(folder)
    source = ImageSource.from_paths([folder, one, str(folder) + "/", inputs / "link", one], SPEC)
    assert len(source) == len(list(folder.rglob("*.png"))) == 6


def test_output_given_to_a_single_output_model_is_warned_about(inputs, tmp_path, capsys):
    status = main(["report", str(inputs / "tiny.pth"), "--arch", "helpers:TinyNet", "--pythonpath", str(TESTS),
                   "--images", str(inputs / "images"), "--input-size", "16", "16", "--device", "cpu",
                   "--output", "1", "-o", str(tmp_path / "out")])
    assert status == 0
    assert "semiotui: warning: --output 1 ignored: the model returns a single tensor" in capsys.readouterr().err


GOOD = {"input_size": [16, 16], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "classes": ["a", "b"]}
BAD_SIDECARS = {  # what preprocess.json holds: what the message names
    "a list": ([1, 2], "a JSON object"),
    "a size of zero": ({**GOOD, "input_size": [0, 16]}, "input_size"),
    "one size": ({**GOOD, "input_size": [16]}, "input_size"),
    "a fractional size": ({**GOOD, "input_size": [16.5, 16]}, "input_size"),
    "two means": ({**GOOD, "mean": [0.5, 0.5]}, "mean"),
    "a zero std": ({**GOOD, "std": [0.25, 0, 0.25]}, "std"),
    "a NaN std": ({**GOOD, "std": [float("nan")] * 3}, "std"),
    "a std as text": ({**GOOD, "std": "0.25"}, "std"),
    "classes that are not names": ({**GOOD, "classes": [1, 2]}, "classes"),
}


@pytest.mark.parametrize("case", BAD_SIDECARS)
def test_bad_preprocess_json_values_are_refused_with_one_line(case, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    torch.save(TinyNet(classes=2).state_dict(), tmp_path / "tiny.pth")
    content, field = BAD_SIDECARS[case]
    (tmp_path / "preprocess.json").write_text(json.dumps(content))
    with pytest.raises(LoadError) as err:
        load_model(tmp_path / "tiny.pth", arch="helpers:TinyNet", arch_kwargs={"classes": 2})
    message = str(err.value)
    assert "preprocess.json" in message and field in message and "\n" not in message


@pytest.mark.parametrize("arch", [":", "os:", ":system"])
def test_an_arch_without_module_or_name_says_what_it_expects(arch, tmp_path):
    torch.save(TinyNet().state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(LoadError, match=r"`arch` .*: expected a torchvision model name .*or package.module:Class"):
        load_model(tmp_path / "tiny.pth", arch=arch)


def test_links_that_loop_or_lead_to_a_folder_are_skipped_with_a_notice_and_the_run_goes_on(inputs, tmp_path, capsys):
    images = inputs / "images"
    (images / "loop").symlink_to("loop")  # beside the class folders: not part of the tree
    (images / "c0" / "loop").symlink_to("loop")
    (images / "c1" / "a").symlink_to("b")
    (images / "c1" / "b").symlink_to("a")
    (images / "c1" / "up").symlink_to("..")
    out = tmp_path / "out"
    status = main(["report", str(inputs / "tiny.pth"), "--arch", "helpers:TinyNet", "--pythonpath", str(TESTS),
                   "--images", str(images), "--input-size", "16", "16", "--device", "cpu", "--no-control",
                   "-o", str(out)])
    err = capsys.readouterr().err
    assert status == 0, err
    loops, folder = "a link that loops back on itself", "a link to a folder, not followed"
    notice = ("semiotui: skipped 4 file(s) that are not readable images: "
              f"images/c0/loop ({loops}), images/c1/a ({loops}), images/c1/b ({loops}), images/c1/up ({folder})")
    assert notice in " ".join(err.split())  # Rich folds long lines at the console's width
    report = json.loads((out / "report.json").read_text())
    assert len(report["images"]) == 6
    assert [entry["path"] for entry in report["skipped"]] == ["images/c0/loop", "images/c1/a", "images/c1/b",
                                                             "images/c1/up"]
