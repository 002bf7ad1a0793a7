"""`semiotui open DIR`: a saved report browsed in the explorer with no model, from a folder copied elsewhere."""

from __future__ import annotations

import csv
import json
import re
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import demo_workspace, interface_stub, notifications, report_args, wait_until, write_tiny_inputs

from semiotui.engine.analysis import add_maps, analyse
from semiotui.engine.explain import contrast_pair
from semiotui.engine.reports.write import write_report
from semiotui.engine.saved import open_report
from semiotui.tui import cli
from semiotui.tui.app import SemiotuiApp
from semiotui.tui.compare import CompareScreen, MistakeList, Significance
from semiotui.tui.curve import EntropyCurve
from semiotui.tui.layer_tree import LayerTree
from semiotui.tui.saliency import SaliencyView
from semiotui.tui.status import StatusLine
from semiotui.tui.steps import StepsView

IMAGES, KEPT = 40, 3
MISTAKE = 7  # arrow_0007, predicted square


@pytest.fixture(scope="module")
def copied_report(tmp_path_factory) -> str:
    """A report of the demo, written on "the server" and copied to another folder, as if to a laptop."""
    workspace = demo_workspace(IMAGES, batch_size=8)
    result = analyse(workspace.model, workspace.images.batches(8), workspace.layers, workspace.settings,
                     keep_maps=KEPT)
    add_maps(workspace.model, workspace.images, workspace.layers, result, contrast_pair(result))
    server = tmp_path_factory.mktemp("server") / "report"
    write_report(server, workspace, result, formats=("json", "csv"))
    laptop = tmp_path_factory.mktemp("laptop") / "copied"
    shutil.copytree(server, laptop)
    shutil.rmtree(server)
    return str(laptop)


async def test_open_shows_the_saved_analysis_with_no_model_and_no_worker(copied_report):
    workspace = open_report(copied_report)
    app = SemiotuiApp(workspace, show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.controller.run_state is not None)
        await pilot.pause()
        assert app.controller.workspace.model is None and not app.controller.has_model  # the saved result, replayed
        run = app.controller.run_state
        assert run.finished and run.done == IMAGES
        status = app.query_one(StatusLine).render().plain
        assert "✓ done 40/40 images" in status and "saved report /" in status
        assert app.query_one(StatusLine).device.startswith(f"saved report {copied_report}")
        tree = app.query_one(LayerTree)
        expected = np.nanmean(workspace.result.entropy, axis=0)  # empty maps (NaN) left out
        assert tree.entropy["features.conv1"] == pytest.approx(expected[0])
        assert list(tree.nodes_by_name) == [info.name for info in workspace.index]
        view = app.query_one(SaliencyView)
        np.testing.assert_allclose(view.content.saliency, workspace.result.images[0].maps["features.conv1"])
        assert app.query_one(StepsView).steps.count == IMAGES
        np.testing.assert_allclose(app.query_one(EntropyCurve).data.mean, expected)


async def test_n_and_p_go_through_every_image_and_say_when_no_map_was_saved(copied_report):
    app = SemiotuiApp(open_report(copied_report), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.controller.run_state is not None)
        view = app.query_one(SaliencyView)
        await pilot.press(*"n" * KEPT)
        assert app.explorer.image == KEPT
        assert view.content.image is None and view.content.saliency is None
        saved = KEPT + 2  # the first images and the contrast pair
        assert view.content.message == f"no saved map: the report kept maps for {saved} of {IMAGES} images"
        assert "image 4/40" in view.content.caption.plain and "predicted" in view.content.caption.plain
        await pilot.press("p", "p")
        assert app.explorer.image == KEPT - 2 and view.content.saliency is not None
        await pilot.press(*"p" * (KEPT - 1))
        assert app.explorer.image == IMAGES - 1  # wraps around to the last image


async def test_settings_and_measuring_need_the_model_and_say_so(copied_report):
    app = SemiotuiApp(open_report(copied_report), show_timings=False)
    notices = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.controller.run_state is not None)
        controller = app.controller
        run, settings, measured = controller.run_state, controller.settings, list(controller.measured)
        await pilot.press("m", "t")
        app.explorer.change_settings(estimator="histogram")
        await pilot.press("j", "space")  # features.bn1: not measured in the report
        await pilot.pause()
        assert controller.run_state is run and controller.settings == settings and controller.measured == measured
        assert any("changing the method needs the model" in n for n in notices)
        assert any("changing the estimator needs the model" in n for n in notices)
        assert any("measuring another layer needs the model" in n for n in notices)
        assert "not measured in this report" in app.query_one(SaliencyView).content.message


async def test_compare_in_a_saved_report_uses_the_saved_maps(copied_report):
    app = SemiotuiApp(open_report(copied_report), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.controller.run_state is not None)
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        listing = screen.query_one(MistakeList)
        assert listing.option_count == 1 and listing.get_option_at_index(0).id == str(MISTAKE)
        await pilot.press("down")
        assert app.explorer.image == MISTAKE
        this, other = screen.query_one("#this-map", SaliencyView), screen.query_one("#partner-map", SaliencyView)
        assert this.content.saliency is not None
        assert other.content.saliency is not None or other.content.message.startswith("empty map")
        result = app.controller.workspace.result
        partner = result.images[contrast_pair(result)[1]].index  # the correct arrow the report drew beside it
        assert other.border_title == "Correct arrow" and f"image {partner + 1}/40" in other.content.caption.plain
        assert "No control was run, so no step is called superization" in screen.query_one(Significance).render().plain
        assert not [w for w in app.workers if w.group == "maps"]


def test_open_a_missing_or_incomplete_folder_fails_with_one_line(tmp_path, capsys):
    assert cli.main(["open", str(tmp_path / "nowhere")]) == 1
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "report.json").write_text("{}")
    assert cli.main(["open", str(incomplete)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("semiotui: error: ") for line in lines)
    assert "nowhere is not a folder" in lines[0] and "entropy.csv, maps.npz missing" in lines[1]


def test_open_runs_the_explorer_on_the_report_and_debug_reaches_it(copied_report, monkeypatch):
    opened = []
    monkeypatch.setattr("semiotui.tui.app.run_app", interface_stub(opened))
    assert cli.main(["open", copied_report]) == 0
    assert cli.main(["open", copied_report, "--debug"]) == 0
    assert opened[0][0].model is None and len(opened[0][0].images) == IMAGES
    assert [debug for _, debug in opened] == [False, True]


def test_a_report_that_skipped_an_unreadable_file_opens_and_compares(tmp_path, monkeypatch, capsys):
    """maps.npz names the images report.json lists, not the files found: one of those was no image."""
    inputs = write_tiny_inputs(tmp_path, images=6, size=16, classes=2)
    (inputs / "images" / "c0" / "0.png").write_text("not an image")  # the first file, skipped
    for name in ("a", "b"):
        assert cli.main(report_args(inputs, tmp_path / name)) == 0
    data = json.loads((tmp_path / "a" / "report.json").read_text())
    assert [s["path"] for s in data["skipped"]] == ["images/c0/0.png"] and len(data["images"]) == 6
    capsys.readouterr()
    opened = []
    monkeypatch.setattr("semiotui.tui.app.run_app", interface_stub(opened))
    assert cli.main(["open", str(tmp_path / "a")]) == 0, capsys.readouterr().err
    pictures = opened[0][0].images
    assert [pictures.image(i) is not None for i in range(6)] == [True] * 6  # the report draws maps for all six
    with np.load(tmp_path / "a" / "maps.npz") as maps:
        layers = ["input", *(layer["name"] for layer in data["layers"])]
        assert sorted(maps.files) == sorted(f"{i}/{layer}" for i in range(6) for layer in layers)
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "ab")]) == 0
    assert "comparison written to" in capsys.readouterr().err


def _edit_json(change):
    def tamper(folder: Path) -> None:
        data = json.loads((folder / "report.json").read_text())
        change(data)
        (folder / "report.json").write_text(json.dumps(data))
    return tamper


def _edit_maps(change):
    def tamper(folder: Path) -> None:
        with np.load(folder / "maps.npz") as npz:
            arrays = {key: npz[key] for key in npz.files}
        change(arrays)
        np.savez_compressed(folder / "maps.npz", **arrays)
    return tamper


def _edit_csv(row: int, column: int, value: str):
    def tamper(folder: Path) -> None:
        with (folder / "entropy.csv").open(newline="") as f:
            rows = list(csv.reader(f))
        rows[row][column] = value
        with (folder / "entropy.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)
    return tamper


def _declared_size(member: str, size: int):
    """maps.npz's directory says `member` expands to `size` bytes (as a zip bomb's does, truly)."""
    def tamper(folder: Path) -> None:
        archive = bytearray((folder / "maps.npz").read_bytes())
        name = f"{member}.npy".encode()
        start = next(m.start() for m in re.finditer(b"PK\x01\x02", archive)  # a central directory record
                     if archive[m.start() + 46 : m.start() + 46 + len(name)] == name)
        struct.pack_into("<I", archive, start + 24, size)  # the central directory's uncompressed size
        (folder / "maps.npz").write_bytes(archive)
    return tamper


def _huge_header(folder: Path) -> None:
    """A member whose .npy header declares 2**40 bytes over 16 bytes of data."""
    with np.load(folder / "maps.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    with zipfile.ZipFile(folder / "maps.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w") as f:
                if key == "0/input":
                    np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                             "shape": (1 << 40,)})
                    f.write(bytes(16))
                else:
                    np.lib.format.write_array(f, array)


TAMPERED = {
    # name: (what is done to a copy of the report, what the one line says)
    "maps.npz expanding past what open reads": (_declared_size("0/input", 0xFFFF0000),
                                                r"maps.npz would take 4.0 GiB in memory, more than the 1 GiB"),
    "an array header declaring a terabyte": (_huge_header, r"maps.npz: 0/input holds uint8 \(1099511627776,\)"),
    "a map of NaN": (_edit_maps(lambda a: a["0/features.conv1"].fill(np.nan)), r"0/features.conv1 holds NaN"),
    "a map of three dimensions": (_edit_maps(lambda a: a.update({"1/features.conv1": np.zeros((2, 3, 4), np.float16)})),
                                  r"maps.npz: 1/features.conv1 holds float16 \(2, 3, 4\)"),
    "a picture of the wrong size": (_edit_maps(lambda a: a.update({"0/input": np.zeros((5, 5, 3), np.uint8)})),
                                    r"maps.npz: 0/input holds uint8 \(5, 5, 3\)"),
    "maps of an image the report does not have": (
        _edit_maps(lambda a: a.update({"999/input": a["0/input"]})), r"maps.npz: 999/input is no image"),
    "an entropy that is not a number": (_edit_csv(1, 2, "nan"), r"entropy.csv: row 1 holds a value that is not a"),
    "a confidence that is a word": (_edit_json(lambda d: d["images"][0].update(confidence="high")),
                                    r"report.json: 'images' is missing or not what semiotui writes"),
    "a model that is a list": (_edit_json(lambda d: d.update(model=[])), r"report.json: 'model' is missing"),
    "a layer depth that would fill the memory": (_edit_json(lambda d: d["index"][0].update(depth=10**9)),
                                                 r"report.json: the layer index is not one semiotui writes"),
    "a layer called more often than it returns": (_edit_json(lambda d: d["index"][0].update(calls=10**9)),
                                                  r"report.json: the layer index is not one semiotui writes"),
    "grey levels past 4096": (_edit_json(lambda d: d["settings"].update(levels=46341)), r"levels must be from 2 to 4096"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_a_tampered_report_is_refused_with_one_line_before_anything_is_shown(case, copied_report, tmp_path,
                                                                            monkeypatch, capsys):
    folder = tmp_path / "tampered"
    shutil.copytree(copied_report, folder)
    tamper, message = TAMPERED[case]
    tamper(folder)
    opened = []
    monkeypatch.setattr("semiotui.tui.app.run_app", interface_stub(opened))
    assert cli.main(["open", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("semiotui: error: ") and re.search(message, err), err
    assert not opened


def test_the_interface_stub_the_tests_use_has_run_apps_signature():
    import inspect

    from semiotui.tui.app import run_app

    def parameters(function):
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    assert parameters(interface_stub([])) == parameters(run_app)
