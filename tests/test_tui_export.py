"""Export from the interface: `e` opens a dialog that writes the report folder, with a screenshot, in a worker."""

from __future__ import annotations

import json
import re

from helpers import demo_workspace, finished, images_done, notifications, run_from_palette, wait_until

from semiotui.tui.app import SemiotuiApp
from semiotui.tui.export import ExportDialog


async def export_to(pilot, folder, *, replace: bool = False) -> ExportDialog:
    """Open the dialog with `e`, fill in the folder (and tick Replace), and press Export."""
    app = pilot.app
    await pilot.press("e")
    await wait_until(pilot, lambda: isinstance(app.screen, ExportDialog))
    dialog = app.screen
    dialog.query_one("#export-folder").value = str(folder)
    dialog.query_one("#export-replace").value = replace
    await pilot.click("#export-go")
    return dialog


async def test_e_writes_the_report_folder_with_a_screenshot_and_names_it(tmp_path):
    app = SemiotuiApp(demo_workspace(8), show_timings=False)
    folder = tmp_path / "report"
    said = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        await export_to(pilot, folder)
        await wait_until(pilot, lambda: any(str(folder) in message for message in said))
        assert not isinstance(app.screen, ExportDialog)
    data = json.loads((folder / "report.json").read_text())
    assert data["analysis"]["images"] == 8 and data["analysis"]["cancelled"] is False
    assert data["analysis"]["accuracy"]["images"] == 8
    assert [layer["name"] for layer in data["layers"]] == app.controller.run_state.map_names
    screenshot = (folder / "screenshot.svg").read_text()
    assert screenshot.startswith("<svg") and "Layers" in screenshot
    html = (folder / "report.html").read_text()
    assert "<h2>Interface</h2>" in html
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", html.replace("http://www.w3.org/2000/svg", ""))
    assert len(list((folder / "images").glob("*_input.png"))) <= 6 + 2  # the first images and the contrast pair


async def test_an_existing_report_is_refused_until_replace_is_ticked(tmp_path):
    app = SemiotuiApp(demo_workspace(8), show_timings=False)
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"semiotui": "0.1.0"}))  # an earlier report
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        dialog = await export_to(pilot, folder)
        await pilot.pause(0.2)
        assert app.screen is dialog
        status = dialog.query_one("#export-status")
        assert "already exists" in str(status.render()) and status.has_class("-error")
        assert [p.name for p in folder.iterdir()] == ["report.json"]
        dialog.query_one("#export-replace").value = True
        await pilot.click("#export-go")
        await wait_until(pilot, lambda: not isinstance(app.screen, ExportDialog))
    assert sorted(p.name for p in folder.iterdir() if p.suffix) == [
        "entropy.csv", "maps.npz", "report.html", "report.json", "report.md", "screenshot.svg",
    ]
    assert not list(tmp_path.glob(".report*"))


async def test_replace_never_removes_a_folder_that_is_not_a_report(tmp_path):
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        dialog = await export_to(pilot, folder, replace=True)
        await pilot.pause(0.2)
        assert app.screen is dialog
        status = dialog.query_one("#export-status")
        assert "not a semiotui report folder" in str(status.render()) and status.has_class("-error")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"] and (folder / "notes.txt").read_text() == "mine"


async def test_exporting_while_the_analysis_runs_writes_the_finished_images_marked_partial(tmp_path):
    workspace = demo_workspace(24, batch_size=4, gated=True)
    app = SemiotuiApp(workspace, show_timings=False)
    folder = tmp_path / "partial"
    async with app.run_test(size=(120, 40)) as pilot:
        workspace.images.allow(1)
        await wait_until(pilot, images_done(app, 4))
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportDialog))
        note = str(app.screen.query_one("#export-note").render())
        assert "still running" in note and "partial" in note
        app.screen.query_one("#export-folder").value = str(folder)
        app.screen.query_one("#format-html").value = False
        await pilot.click("#export-go")
        workspace.images.open()  # the export stops the run, which ends after the batch it waits for
        await wait_until(pilot, lambda: not isinstance(app.screen, ExportDialog))
    data = json.loads((folder / "report.json").read_text())
    assert not data["analysis"]["cancelled"] and data["analysis"]["partial"] == "still running"
    assert 4 <= len(data["images"]) < 24 and data["analysis"]["total"] == 24
    assert f"(partial: {len(data['images'])} of 24 images, analysis still running)" in (folder / "report.md").read_text()
    assert data["analysis"]["accuracy"]["images"] == len(data["images"])
    assert not (folder / "report.html").exists()


async def test_the_palette_opens_the_export_dialog():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        await run_from_palette(pilot, "export report", "Export")
        await wait_until(pilot, lambda: isinstance(app.screen, ExportDialog))
        await pilot.press("escape")
        assert not isinstance(app.screen, ExportDialog)


def test_a_report_of_another_model_whose_progress_fails_ends_with_that_error_instead_of_waiting_forever():
    import threading

    from semiotui.engine.analysis import Finished
    from semiotui.engine.session import open_session
    from semiotui.tui.controller import RunController

    workspace = demo_workspace(4)
    session = open_session(workspace)
    controller = RunController(session, lambda *call: None, keep_maps=4)

    def progress(text, done, total):
        if done:  # the dialog went away while the first batch was analysed
            raise RuntimeError("the dialog is gone")

    outcome: list[BaseException] = []

    def prepare():
        try:
            source = controller.report_of_model(workspace.model, workspace.layers, workspace.settings)
            source(progress, threading.Event())
        except RuntimeError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=prepare, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the report waits forever on a job that cannot end"
    assert [str(exc) for exc in outcome] == ["the dialog is gone"]
    events: list[object] = []
    later = session.analyse_model(lambda job, event: events.append(event), workspace.model, workspace.settings,
                                  workspace.layers, keep_maps=0)
    assert later.ended.wait(30) and any(isinstance(event, Finished) for event in events)  # the session goes on
    session.close()
