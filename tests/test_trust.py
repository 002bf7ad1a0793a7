"""What a researcher may believe: random networks show no superization, a wrong label order is named, empty maps
never count. These run the real command line on models nobody trained here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from semiotui.engine.demo import demo_samples
from semiotui.tui.cli import main

pytestmark = pytest.mark.slow  # random resnet18 and vgg11-shaped networks, each with its control

IMAGES = 30


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """30 small colour images (the demo's shapes on clutter), as files in one folder."""
    folder = tmp_path_factory.mktemp("photos")
    for i, (image, _) in enumerate(demo_samples("val", IMAGES)):
        image.save(folder / f"{i:02d}.png")
    return folder


def _narrow_vgg11() -> nn.Module:
    """vgg11's chain (8 convolutions, 5 max-poolings) at a quarter of its width, with one linear layer after.

    What the control is tested on is the chain, without a shortcut: vgg11's own 123M weights of classifier
    (shuffled for each control network) made that test take two minutes.
    """
    layers = torchvision.models.vgg.cfgs["A"]
    features = torchvision.models.vgg.make_layers([n if n == "M" else n // 4 for n in layers])
    return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 1000))


@pytest.mark.parametrize("arch", ["resnet18", "vgg11"])
def test_a_network_with_random_weights_shows_no_superization(arch, photos, tmp_path, capsys):
    """resnet18 as torchvision builds it (residual branches, batch norm), from its weights and --arch; the plain
    chain of vgg11's layers as a full module."""
    torch.manual_seed(1)
    if arch == "resnet18":
        torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "model.pth")
        model = [str(tmp_path / "model.pth"), "--arch", arch]
    else:
        torch.save(_narrow_vgg11(), tmp_path / "model.pt")
        model = [str(tmp_path / "model.pt"), "--trust"]
    code = main(["report", *model, "--images", str(photos), "--input-size", "64", "64",
                 "-o", str(tmp_path / "out"), "--formats", "json", "csv"])
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["control"]["draws"] == 8 and data["control"]["images"] == IMAGES
    steps = [layer for layer in data["layers"] if layer["parent"] is not None]
    assert steps and not any(layer["significant"] for layer in steps)
    assert data["summary"][0].startswith("No superization")
    spans = data["verdict"]["spans"]
    assert sum(s["untested"] is None for s in spans) > 10 and not any(s["claimed"] for s in spans)


def _brightness_net() -> nn.Module:
    """Class 0 for light images, class 1 for dark ones (fixed weights, no training)."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        for conv in (net[0], net[3]):
            conv.weight.uniform_(0.01, 0.1)
            conv.bias.zero_()
        net[6].weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4]))
        net[6].bias.copy_(torch.tensor([-0.5, 0.5]))
    return net.eval()


def test_labels_in_another_order_than_the_models_are_named_and_classes_fix_it(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name, level in (("light", 220), ("dark", 20)):  # sorted, "dark" comes first: the model's class 1
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(level + rng.normal(0, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / name / f"{i}.png")
    torch.save(_brightness_net(), tmp_path / "net.pt")
    common = [str(tmp_path / "net.pt"), "--trust", "--images", str(tmp_path / "images"), "--no-control",
              "--input-size", "16", "16", "--formats", "json"]
    assert main(["report", *common, "-o", str(tmp_path / "wrong")]) == 0
    err = capsys.readouterr().err
    data = json.loads((tmp_path / "wrong" / "report.json").read_text())
    assert data["analysis"]["accuracy"]["top1"] == 0.0
    assert "below chance" in err and "--classes" in err and any("below chance" in w for w in data["warnings"])
    assert main(["report", *common, "--classes", "light,dark", "-o", str(tmp_path / "right")]) == 0
    err = capsys.readouterr().err
    data = json.loads((tmp_path / "right" / "report.json").read_text())
    assert data["analysis"]["accuracy"]["top1"] == 1.0 and data["model"]["classes"] == ["light", "dark"]
    assert "below chance" not in err and not data["warnings"]
    assert main(["report", *common, "--classes", "light", "-o", str(tmp_path / "bad")]) == 1
    assert "--classes gives 1 names but the model has 2 classes" in capsys.readouterr().err
