"""Names from outside (files, folders, classes, layers, a saved report's content) are shown as written.

Textual reads a string as markup: a file named `[link=a:b]oops.png` crashed the
interface, and one named `[@click=app.screenshot(...)]` made a notification write
a file when clicked. Every name here carries markup, or is not UTF-8.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from helpers import finished, open_pruning, press, screen_text, wait_until
from textual.command import CommandList
from textual.widgets import DataTable, Input
from torch import nn

from semiotui.engine import AnalysisSettings, analyse, index_layers
from semiotui.engine.data import ImageSource
from semiotui.engine.reports.write import write_report
from semiotui.engine.saved import open_report
from semiotui.engine.workspace import InputSpec, ModelInfo, Workspace
from semiotui.tui.app import SemiotuiApp
from semiotui.tui.compare import CompareScreen
from semiotui.tui.confirm import ConfirmQuit
from semiotui.tui.export import ExportDialog

CLICK = "[@click=app.screenshot('victim.txt','.')]"
CLASSES = ["[link=a:b]cats", "[reverse]dogs"]
IMAGES = {  # file name (bytes: not all are UTF-8) -> as shown
    f"{CLASSES[0]}/{CLICK}CLICKME.png".encode(): f"{CLICK}CLICKME.png",
    f"{CLASSES[0]}/[reverse]oops.png".encode(): "[reverse]oops.png",
    f"{CLASSES[1]}/[link=a:b]oops.png".encode(): "[link=a:b]oops.png",
    f"{CLASSES[1]}/bad".encode() + b"\xff.png": "bad\ufffd.png",
}
JUNK = f"{CLASSES[1]}/{CLICK}JUNK.png"  # not an image: named in the warning of skipped files


class MarkupNet(nn.Module):
    """Two convs named with markup (a module name takes anything but a dot)."""

    NAMES = ("[link=a:b]conv", "[reverse]conv")

    def __init__(self) -> None:
        super().__init__()
        self.add_module(self.NAMES[0], nn.Conv2d(3, 4, 3, padding=1))
        self.add_module(self.NAMES[1], nn.Conv2d(4, 4, 3, padding=1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.NAMES:
            x = torch.relu(getattr(self, name)(x))
        return self.head(x)


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """The working directory, with the images (a notification's screenshot would land here too)."""
    work = tmp_path / "work"
    rng = np.random.default_rng(0)
    for name in IMAGES:
        path = Path(os.fsdecode(os.fsencode(work / "imgs") + b"/" + name))
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(path, format="PNG")
    (work / "imgs" / JUNK).write_text("not an image")
    (work / "[link=a:b]taken").write_text("a file of the user's")
    monkeypatch.chdir(work)
    return work


def markup_workspace() -> Workspace:
    spec = InputSpec((16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    images = ImageSource.from_paths([Path("imgs")], spec)
    model = MarkupNet().eval()
    index = index_layers(model, images.example())
    return Workspace(model, ModelInfo("[link=a:b]model.pt", "pickle", "MarkupNet", 1), spec, index, index.select(),
                     images, AnalysisSettings(batch_size=4, device="cpu"), class_names=images.class_names,
                     warnings=list(images.warnings))


def files(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its sha256."""
    return {os.fsencode(p).hex(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


async def test_markup_in_names_is_shown_as_written_and_a_notification_runs_nothing(folder):
    before = files(folder)
    app = SemiotuiApp(markup_workspace(), show_timings=False)
    async with app.run_test(size=(240, 50), notifications=True) as pilot:
        await wait_until(pilot, finished(app))
        await pilot.pause()
        toast = app.screen.query_one("Toast")  # Textual's notification widget, by its CSS type name
        warning = toast.render().plain
        region = toast.region
        cells = [(x, y) for y in range(region.y, region.bottom) for x in range(region.x, region.right)]
        clickable = [cell for cell in cells if app.screen.get_style_at(*cell).meta.get("@click")]
        if clickable:  # the name's markup made part of the toast an action: clicking it wrote victim.txt
            await pilot.click(offset=clickable[0])
            await pilot.pause(0.5)
        assert not (folder / "victim.txt").exists() and not clickable
        assert f"{CLICK}JUNK.png (not an image)" in warning
        text = screen_text(app)
        assert all(name in text for name in MarkupNet.NAMES)  # the tree
        assert f"{MarkupNet.NAMES[0]} · Conv2d 4×16×16" in text  # the saliency pane's title
        shown = []
        for _ in range(len(app.controller.workspace.images)):  # the images and the file found not to be one
            shown.append(screen_text(app))
            await pilot.press("n")
        assert all(any(name in text for text in shown) for name in IMAGES.values())
        assert any(f"{CLICK}JUNK.png" in text and "skipped: not an image" in text for text in shown)

        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.pause(0.5)
        text = screen_text(app)
        assert any(name in text for name in CLASSES)
        await pilot.press("escape")

        await pilot.press("ctrl+p", *"conv")
        hits = app.screen.query_one(CommandList)
        await wait_until(pilot, lambda: hits.option_count >= 2)
        assert all(f"Layer: {name}" in screen_text(app) for name in MarkupNet.NAMES)
        await pilot.press("escape")
        await pilot.press("ctrl+p", *"target")
        hits = app.screen.query_one(CommandList)
        await wait_until(pilot, lambda: hits.option_count >= 3)
        assert all(f"Target: {name}" in screen_text(app) for name in CLASSES)
        await pilot.press("escape")

        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportDialog))
        app.screen.query_one("#export-folder", Input).value = "[link=a:b]taken"
        await pilot.press("enter")
        await pilot.pause()
        assert "[link=a:b]taken is a file, not a folder" in screen_text(app)
        await pilot.press("escape")
        assert app.is_running
    assert files(folder) == before  # nothing written, nothing changed


async def test_markup_in_layer_and_file_names_is_shown_as_written_in_the_pruning_screen(folder):
    app = SemiotuiApp(markup_workspace(), show_timings=False)
    async with app.run_test(size=(240, 50)) as pilot:
        screen = await open_pruning(pilot, **{"max-steps": "1"})
        assert "./[link=a:b]model-pruned.pt" == screen.query_one("#save-path", Input).value
        await press(pilot, "s")
        await wait_until(pilot, lambda: screen.pruned is not None)
        assert screen.query_one(DataTable).row_count >= 1
        assert any(name in screen_text(app) for name in MarkupNet.NAMES)  # the steps' table
        screen.query_one("#save-path", Input).value = "[link=a:b]nowhere/pruned.pt"
        screen.save()  # in a worker: wait for its answer
        await wait_until(pilot, lambda: "cannot write [link=a:b]nowhere/pruned.pt" in screen_text(app))
        (folder / "[link=a:b]taken.pt").write_text("a file of the user's")
        screen.query_one("#save-path", Input).value = "[link=a:b]taken.pt"
        screen.save()
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        await pilot.pause()
        question = app.screen.query_one("#question").render().plain  # wrapped in the dialog
        assert "[link=a:b]taken.pt or its log [link=a:b]taken.json already exists" in question
        await pilot.press("n")
        assert app.is_running
    assert (folder / "[link=a:b]taken.pt").read_text() == "a file of the user's"


async def test_a_saved_report_with_markup_names_opens_and_shows_them_as_written(folder):
    workspace = markup_workspace()
    result = analyse(workspace.model, workspace.images.batches(4), workspace.layers, workspace.settings,
                     keep_maps=len(IMAGES))
    saved = write_report(folder / "[link=a:b]report", workspace, result, formats=("json", "csv"))
    app = SemiotuiApp(open_report(saved), show_timings=False)
    async with app.run_test(size=(240, 50), notifications=True) as pilot:
        await wait_until(pilot, lambda: app.controller.run_state is not None)
        await pilot.pause()
        assert "[link=a:b]report (semiotui" in app.screen.query_one("Toast").render().plain
        text = screen_text(app)
        assert all(name in text for name in MarkupNet.NAMES) and f"{CLICK}CLICKME.png" in text
        assert app.is_running


async def test_escape_sequences_and_bidi_controls_in_layer_names_stay_out_of_the_entropy_curve():
    """plotext's drawing is read back as ANSI: an OSC 8 escape in a layer name made the plot a hyperlink."""
    from textual.app import App

    from semiotui.tui.curve import CurveData, EntropyCurve

    link = "\x1b]8;;https://example.com\x1b\\"

    class OneCurve(App):
        def compose(self):
            yield EntropyCurve()

    app = OneCurve()
    async with app.run_test(size=(120, 30)) as pilot:
        curve = app.query_one(EntropyCurve)
        values = np.array([1.0, 2.0])
        curve.data = CurveData([f"a{link}conv", "b\u202econv"], values, values - 0.5, values + 0.5, values, 0,
                               labels=(f"mean{link}", "image"))
        segments = lambda: [segment for line in curve._lines for segment in line]
        await wait_until(pilot, lambda: "(layer 1 of 2)" in "".join(segment.text for segment in segments()))
        segments = segments()
        text = "".join(segment.text for segment in segments)
        assert "a\ufffd]8;;https://example.com\ufffd\\conv" in text and "mean\ufffd]8" in text
        assert "\x1b" not in text and "\u202e" not in text
        assert not any(segment.style is not None and segment.style.link for segment in segments)
