"""What the tests share: small models, inputs on disk, a demo workspace whose batches the test lets through, and
waiting on the interface."""

from __future__ import annotations

import html
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from textual import events
from textual.command import CommandList
from textual.widgets import Input
from textual.worker import WorkerCancelled
from torch import nn

from semiotui.engine.analysis import AnalysisSettings, Batch
from semiotui.engine.control import ControlSettings
from semiotui.engine.data import ImageSource
from semiotui.engine.demo import CLASSES, INPUT_SPEC, demo_images, load_demo_model
from semiotui.engine.layers import index_layers
from semiotui.engine.workspace import ModelInfo, Workspace

# Only for type hints: the commands the tests run load the models here by name (--arch helpers:TinyNet),
# and need not load the interface.
if TYPE_CHECKING:
    from semiotui.tui.app import SemiotuiApp
    from semiotui.tui.prune_screen import PruneScreen

ROOT = Path(__file__).resolve().parents[1]
# Reference values the tests reproduce, vendored byte for byte from the project's hand-over material.
TESTDATA = ROOT / "tests" / "data"
GATE_TIMEOUT = 60.0  # seconds a gated batch waits before it fails the run: a test that forgot to let it through


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


class SlowNet(TinyNet):
    """TinyNet that takes a quarter of a second per call, so a command-line run lasts long enough to interrupt or
    race from another process."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.25)
        return super().forward(x)


class FailsOnBrightImages(TinyNet):
    """TinyNet that fails like a broken worker on a very bright image (for sharded-run tests)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x.flatten(1).mean(1) > 1.5).any()):
            raise RuntimeError("cannot process a saturated image")
        return super().forward(x)


class FailsOnThirdBatch(TinyNet):
    """TinyNet whose forward raises on the third batch it analyses (the calls with gradients: loading checks the
    model without), as a model that breaks partway through a run."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__(classes)
        self.analysed = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.analysed += 1
            if self.analysed == 3:
                raise RuntimeError("the model broke on this batch")
        return super().forward(x)


def write_tiny_inputs(folder: Path, *, images: int, size: int, classes: int) -> Path:
    """A TinyNet state dict (`tiny.pth`) and an ImageFolder tree of small random images in `folder`."""
    torch.manual_seed(0)
    torch.save(TinyNet().state_dict(), folder / "tiny.pth")
    rng = np.random.default_rng(0)
    for i in range(images):
        class_folder = folder / "images" / f"c{i % classes}"
        class_folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((size, size, 3)) * 200).astype(np.uint8)).save(class_folder / f"{i:02d}.png")
    return folder


def report_args(inputs: Path, out: Path | str, *extra: str, arch: str = "TinyNet") -> list[str]:
    """`semiotui report` of the helpers' `arch` on what `write_tiny_inputs` wrote in `inputs`, into `out`, no control."""
    return ["report", str(inputs / "tiny.pth"), "--arch", f"helpers:{arch}", "--pythonpath", str(ROOT / "tests"),
            "--images", str(inputs / "images"), "--input-size", "16", "16", "--device", "cpu", "--no-control",
            "-o", str(out), *extra]


def only_error_line(stderr: str) -> str:
    """The one line a failed command printed, with no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("semiotui: error: ")
    return lines[0]


class GatedSource:
    """An image source whose batches wait until the test lets them through (`allow`, `open`), so a run is
    still going, at a known point, while the test acts on it."""

    def __init__(self, source: ImageSource) -> None:
        self.source = source
        self._allowed = 0.0
        self._gate = threading.Condition()

    def __getattr__(self, name: str) -> object:
        return getattr(self.source, name)

    def __len__(self) -> int:
        return len(self.source)

    def allow(self, batches: int) -> None:
        """Let `batches` more batches through."""
        with self._gate:
            self._allowed += batches
            self._gate.notify_all()

    def open(self) -> None:
        """Let every batch through from now on."""
        self.allow(math.inf)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        for batch in self.source.batches(batch_size):
            with self._gate:
                if not self._gate.wait_for(lambda: self._allowed > 0, GATE_TIMEOUT):
                    raise TimeoutError("the test never let this batch through")
                self._allowed -= 1
            yield batch


def demo_workspace(images: int = 16, *, batch_size: int = 4, gated: bool = False,
                   control: ControlSettings | None = None, **settings: object) -> Workspace:
    """The demo model on its first `images` validation images, analysed on the CPU; with `gated`, the images are a
    `GatedSource` whose batches wait for the test.

    No control analysis unless asked for (it would add a pass per control network to every test).
    """
    source = demo_images("val", images)
    model = load_demo_model()
    index = index_layers(model, next(source.batches(1)).images)
    return Workspace(
        model=model,
        info=ModelInfo(None, "demo", "DemoNet", sum(p.numel() for p in model.parameters())),
        spec=INPUT_SPEC,
        index=index,
        layers=index.default_selection(),
        images=GatedSource(source) if gated else source,
        settings=replace(AnalysisSettings(), device="cpu", batch_size=batch_size, **settings),
        class_names=list(CLASSES),
        control=control,
    )


async def wait_until(pilot, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Let the app run until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert pilot.app.is_running, "the app stopped"
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def interface_stub(opened: list[tuple[Workspace, bool]]) -> Callable[..., int]:
    """A stand-in for `tui.app.run_app`, with its signature: opens the workspace as the app would (raising what
    that raises), records `(workspace, debug)` in `opened`, shows nothing, exits 0."""

    def run_app(open_workspace: Callable[[], Workspace], *, debug: bool = False) -> int:
        opened.append((open_workspace(), debug))
        return 0

    return run_app


def notifications(app: SemiotuiApp) -> list[str]:
    """The messages the app notifies from now on, in order (recorded by wrapping its public `notify`)."""
    said: list[str] = []
    notify = app.notify

    def recording(message: str, **options: object) -> None:
        said.append(message)
        notify(message, **options)

    app.notify = recording
    return said


async def workers_done(app: SemiotuiApp) -> None:
    """Wait for the app's workers; a newer curve build cancels an older one, which only means waiting again."""
    while True:
        try:
            return await app.workers.wait_for_complete()
        except WorkerCancelled:
            pass


async def run_from_palette(pilot, typed: str, title: str) -> None:
    """Ctrl+P, type `typed`, wait for a hit whose prompt holds `title`, and run it."""
    await pilot.press("ctrl+p", *typed)
    hits = pilot.app.screen.query_one(CommandList)
    await wait_until(pilot, lambda: hits.option_count and title in str(hits.get_option_at_index(0).prompt))
    await pilot.press("down", "enter")


def finished(app: SemiotuiApp) -> Callable[[], bool]:
    return lambda: app.controller.run_state is not None and app.controller.run_state.finished


def images_done(app: SemiotuiApp, count: int) -> Callable[[], bool]:
    return lambda: app.controller.run_state is not None and app.controller.run_state.done >= count


def screen_text(app: SemiotuiApp) -> str:
    """What the screen shows, as text (from Textual's SVG screenshot)."""
    return html.unescape(re.sub(r"<[^>]*>", "", app.export_screenshot(simplify=True))).replace("\xa0", " ")


async def press(pilot, *keys: str) -> None:
    """Keys as the terminal sends them, without Pilot's wait for an idle CPU (pruning keeps it busy)."""
    for key in keys:
        pilot.app.post_message(events.Key(key, key if len(key) == 1 else None))
        await pilot.pause(0.05)


async def open_pruning(pilot, **fields: str) -> PruneScreen:
    """`g` once the analysis is done, then the form's fields by id."""
    from semiotui.tui.prune_screen import PruneScreen

    app = pilot.app
    await wait_until(pilot, finished(app))
    await pilot.press("g")
    await wait_until(pilot, lambda: isinstance(app.screen, PruneScreen) and app.screen.query("#criterion"))  # the form
    for id, value in {"finetune": "1", **fields}.items():
        app.screen.query_one(f"#{id}", Input).value = value
    return app.screen


class HoldsALock(TinyNet):
    """A TinyNet that cannot be copied (a lock cannot), so no control can be made of it."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
