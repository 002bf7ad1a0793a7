"""Reports of torch.export programs: every stage respects the batch the archive allows, and the control runs
(issue 22, items 1 and 2)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TinyNet, write_tiny_inputs

from semiotui.tui.cli import main

EXPORTS = {  # example batch, dynamic shapes
    "for one image": (1, None),
    "with a dynamic batch": (2, {"x": {0: torch.export.Dim.DYNAMIC}}),
}


@pytest.mark.parametrize("kind", EXPORTS)
def test_a_report_of_an_exported_program_has_its_maps_and_a_control(kind, tmp_path, capsys):
    batch, shapes = EXPORTS[kind]
    model = tmp_path / "model.pt2"  # beside the images, as users keep them
    example = torch.randn(batch, 3, 16, 16)
    torch.export.save(torch.export.export(TinyNet().eval(), (example,), dynamic_shapes=shapes), model)
    inputs = write_tiny_inputs(tmp_path, images=6, size=16, classes=2)
    out = tmp_path / "report"
    status = main(["report", str(model), "--images", str(inputs / "images"), "--device", "cpu",
                   "--control-draws", "3", "--control-images", "4", "-o", str(out)])
    stderr = capsys.readouterr().err
    assert status == 0, stderr
    assert "no control" not in stderr
    # an export keeps its input's size, not how it was normalised: the default is said, with the flags
    assert "normalised its inputs in training is not known: using ImageNet's mean and std; pass --mean and " \
           "--std" in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["control"]["draws"] == 3
    assert sorted(p.name for p in (out / "images").glob("image*_conv1.png"))  # the showcase's maps
