"""Shared fixtures: a seed, a configuration folder of each test's own, a small model."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import TinyNet

if os.environ.get("PYTEST_XDIST_WORKER"):  # `-n 2`: each worker one thread, or two workers fight over two cores
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _config_home(tmp_path, monkeypatch) -> None:
    """A config folder of the test's own: no test reads or writes the user's settings (the theme)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def tiny_net() -> TinyNet:
    return TinyNet().eval()
