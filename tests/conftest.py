"""Shared fixtures: small models and paths to the project's reference data."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
# Reference values the tests reproduce, vendored byte for byte from the project's hand-over material.
TESTDATA = ROOT / "tests" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _config_home(tmp_path, monkeypatch) -> None:
    """A config folder of the test's own: no test reads or writes the user's settings (the theme)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


class TinyNet(nn.Module):
    """Two convs with an in-place ReLU, a pooled head: small enough for fast streaming tests."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        return self.head(self.relu(self.conv2(x)))


@pytest.fixture
def tiny_net() -> TinyNet:
    return TinyNet().eval()


class SlowNet(TinyNet):
    """TinyNet that takes a quarter of a second per call, so a run lasts long enough to interrupt or race."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.25)
        return super().forward(x)


class FailsOnBrightImages(TinyNet):
    """TinyNet that fails like a broken worker on a very bright image (for sharded-run tests)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.flatten(1).mean(1) > 1.5).any()):
            raise RuntimeError("cannot process a saturated image")
        return super().forward(x)


def write_tiny_inputs(folder: Path, *, images: int, size: int, classes: int) -> Path:
    """A TinyNet state dict (`tiny.pth`) and an ImageFolder tree of small random images in `folder`."""
    import numpy as np
    from PIL import Image

    torch.manual_seed(0)
    torch.save(TinyNet().state_dict(), folder / "tiny.pth")
    rng = np.random.default_rng(0)
    for i in range(images):
        class_folder = folder / "images" / f"c{i % classes}"
        class_folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((size, size, 3)) * 200).astype(np.uint8)).save(class_folder / f"{i:02d}.png")
    return folder
