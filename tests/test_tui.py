"""The explorer driven with Textual's Pilot: navigation, restarts, quitting, help, images, themes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import demo_workspace, finished, images_done, screen_text, wait_until, workers_done
from rich.console import Console
from textual.command import CommandList

from semiotui.engine.analysis import analyse
from semiotui.engine.analysis import BatchDone
from semiotui.engine.saliency import module_of
from semiotui.tui.app import SemiotuiApp
from semiotui.tui.confirm import ConfirmQuit
from semiotui.themes.colormaps import resize_bilinear
from semiotui.tui.heatmap import Heatmap
from semiotui.tui.help import HelpScreen
from semiotui.tui.layer_tree import LayerFind, LayerTree
from semiotui.tui.saliency import SaliencyView


async def test_tree_lists_every_layer_in_forward_order_before_the_analysis_ends():
    workspace = demo_workspace(24, batch_size=4, gated=True)
    app = SemiotuiApp(workspace, show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tree = app.query_one(LayerTree)
        assert app.screen.get_widget_at(5, 3)[0] is tree
        assert list(tree.nodes_by_name) == [info.name for info in workspace.index]
        assert app.controller.run_state is None or not app.controller.run_state.finished
        workspace.images.open()
        await wait_until(pilot, finished(app))
        assert app.controller.run_state.done == 24


async def test_j_k_move_the_saliency_pane_to_the_highlighted_layer():
    app = SemiotuiApp(demo_workspace(8), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        assert app.explorer.layer == "features.conv1"
        view = app.query_one(SaliencyView)
        assert view.content.saliency is not None
        await pilot.press("j")
        assert app.explorer.layer == "features.bn1"
        assert view.border_title == "f.bn1 · BatchNorm2d 16×64×64"  # abbreviated to fit whole, never cut
        assert "not measured" in view.content.message
        await pilot.press("j", "j")
        assert app.explorer.layer == "features.pool1"
        assert view.content.saliency is not None
        await pilot.press("k", "up")
        assert app.explorer.layer == "features.bn1"


async def test_enter_opens_and_closes_a_group_of_layers():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tree = app.query_one(LayerTree)
        await wait_until(pilot, lambda: app.explorer.layer == "features.conv1")  # the first map is selected on mount
        await pilot.pause()
        app.explorer.show_layer("features")
        await wait_until(pilot, lambda: app.explorer.layer == "features")
        node = tree.nodes_by_name["features"]
        tree.focus()
        await pilot.pause()
        await pilot.press("enter")
        await wait_until(pilot, lambda: not node.is_expanded)
        await pilot.press("enter")
        await wait_until(pilot, lambda: node.is_expanded)
        await wait_until(pilot, finished(app))


async def test_switching_method_restarts_the_analysis_with_no_stale_rows():
    workspace = demo_workspace(16, batch_size=2, gated=True)
    app = SemiotuiApp(workspace, show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        workspace.images.allow(1)
        await wait_until(pilot, images_done(app, 2))
        old, old_job = app.controller.run_state, app.controller.job
        assert old.running
        await pilot.press("m")
        assert app.controller.settings.method == "layercam"
        assert app.controller.run_state.run_id != old.run_id and old_job.aborted
        # A batch the dropped run still sends is ignored.
        old_job.post(old_job, BatchDone(list(old.rows.values()), 99, 16, 1.0))
        workspace.images.open()
        await wait_until(pilot, finished(app))
        run = app.controller.run_state
        assert run.settings.method == "layercam" and not run.cancelled
        assert sorted(run.rows) == list(range(16)) and run.done == 16
    expected = analyse(workspace.model, workspace.images.batches(4), workspace.layers, run.settings)
    np.testing.assert_allclose(np.stack([run.rows[i].entropy for i in range(16)]), expected.entropy, rtol=1e-6)
    np.testing.assert_allclose(run.stats.mean, np.nanmean(expected.entropy, axis=0), rtol=1e-9)


async def test_space_measures_a_layer_and_restarts():
    app = SemiotuiApp(demo_workspace(8), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        first = app.controller.run_state
        await pilot.press("j", "space")  # features.bn1: spatial, not measured by default
        assert "features.bn1" in app.controller.measured
        assert app.controller.run_state.run_id != first.run_id
        await wait_until(pilot, finished(app))
        assert "features.bn1" in app.controller.run_state.map_names
        assert app.query_one(SaliencyView).content.saliency is not None


async def test_a_map_the_run_did_not_keep_is_drawn_between_its_batches_not_after_it():
    workspace = demo_workspace(40, batch_size=2, gated=True)
    app = SemiotuiApp(workspace, show_timings=False, keep_maps=2)
    async with app.run_test(size=(120, 40)) as pilot:
        workspace.images.allow(3)
        await wait_until(pilot, images_done(app, 6))
        await pilot.press("n", "n", "n")
        assert app.explorer.image == 3  # beyond the 2 images whose maps the run keeps
        workspace.images.allow(1)  # the map is drawn after this batch, between it and the next
        await wait_until(pilot, lambda: app.controller.run_state.rows[3].maps is not None, timeout=20)
        assert app.controller.run_state.running
        await wait_until(pilot, lambda: app.query_one(SaliencyView).content.saliency is not None)
        app.controller.stop_analysis()
        workspace.images.open()


async def test_q_asks_before_quitting_while_the_analysis_runs():
    workspace = demo_workspace(16, batch_size=2, gated=True)
    app = SemiotuiApp(workspace, show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        workspace.images.allow(1)
        await wait_until(pilot, images_done(app, 2))
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmQuit)
        assert app.controller.run_state.running
        await pilot.press("q", "y")
        await pilot.pause()
        assert app.return_value == 0
    workspace.images.open()  # the dropped run stops after the batch it waits for
    assert app.controller.job.aborted and app.controller.job.ended.wait(10)


@pytest.mark.slow  # runs the control
async def test_q_asks_while_the_control_runs_and_quitting_says_it_stops_the_control():
    from semiotui.engine.control import ControlSettings

    app = SemiotuiApp(demo_workspace(8, control=ControlSettings(draws=1000, images=8)), show_timings=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, finished(app))
        assert app.controller.run_state.control_state == "running"  # from the end of the analysis, not its 1st network
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmQuit) and app.screen.message.startswith("The control is running")
        await pilot.press("y")
        await pilot.pause()
        assert app.return_value == 0
    assert app.controller.stopping_note().startswith("semiotui: stopping the control (network ")
    assert app.session.close(timeout=10)


async def test_q_quits_at_once_when_the_analysis_is_done():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        await pilot.press("q")
        await pilot.pause()
        assert app.return_value == 0


async def test_question_mark_opens_help_and_escape_closes_it():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        assert not isinstance(app.screen, HelpScreen)
        await wait_until(pilot, finished(app))


async def test_n_and_p_change_the_image_and_its_caption():
    workspace = demo_workspace(8)
    app = SemiotuiApp(workspace, show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        view = app.query_one(SaliencyView)
        await pilot.press("n")
        assert app.explorer.image == 1
        assert workspace.images.names[1] == "demo/val/square_0001"  # the caption shows the file name
        assert view.content.caption.plain.startswith("square_0001 · image 2/8")
        assert "predicted" in view.content.caption.plain and "true square" in view.content.caption.plain
        np.testing.assert_array_equal(view.content.image, workspace.images.image(1))
        await pilot.press("p", "p")
        assert app.explorer.image == 7


async def test_slash_finds_a_layer_by_name():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("slash")
        find = app.query_one(LayerFind)
        assert find.has_focus
        await pilot.press(*"conv4")
        await pilot.pause()
        assert app.explorer.layer == "features.conv4"
        await pilot.press("down")
        await pilot.pause()
        assert app.explorer.layer == "features.conv4"  # the only match
        await pilot.press("enter")
        assert app.query_one(LayerTree).has_focus and not find.display
        await wait_until(pilot, finished(app))


async def test_palette_changes_the_estimator():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"estimator histogram")
        hits = app.screen.query_one(CommandList)
        await wait_until(pilot, lambda: hits.option_count and "histogram" in str(hits.get_option_at_index(0).prompt))
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: app.controller.settings.estimator == "histogram")
        await wait_until(pilot, finished(app))
        assert app.controller.run_state.settings.estimator == "histogram"


async def test_theme_choice_is_remembered_in_the_config_file(tmp_path):
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.theme == "semiotui-dark"
        app.theme = "semiotui-high-contrast"
        await wait_until(pilot, finished(app))
    saved = json.loads((tmp_path / "config" / "semiotui" / "config.json").read_text())
    assert saved["theme"] == "semiotui-high-contrast"
    again = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with again.run_test(size=(120, 40)) as pilot:
        assert again.theme == "semiotui-high-contrast"
        await wait_until(pilot, finished(again))


async def test_small_terminal_says_the_panes_scroll():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.screen.has_class("-compact")
        assert app.query_one("#compact-hint").display
        assert app.query_one(LayerTree).compact
        await wait_until(pilot, finished(app))


def test_heatmap_draws_two_pixels_per_cell_in_true_colour():
    image = np.zeros((8, 8, 3), np.uint8)
    image[:4] = 255  # white top half
    console = Console(width=8, color_system="truecolor", record=True)
    console.print(Heatmap(image, None, height=4), end="")
    lines = console.export_text().splitlines()
    assert lines == ["▀" * 8] * 4
    segments = list(console.render(Heatmap(image, None, height=4)))
    top = [s.style for s in segments if s.text == "▀"]
    assert top[0].color.triplet == (255, 255, 255) and top[0].bgcolor.triplet == (255, 255, 255)
    assert top[-1].color.triplet == (0, 0, 0)


def test_heatmap_without_colour_draws_the_map_as_characters():
    saliency = np.zeros((4, 4))
    saliency[1:3, 1:3] = 1.0
    console = Console(width=4, no_color=True, record=True)
    console.print(Heatmap(np.zeros((4, 4, 3), np.uint8), saliency, color=False, height=2), end="")
    text = console.export_text()
    assert "@" in text and " " in text and "▀" not in text


def test_bilinear_resize_matches_torch():
    torch = pytest.importorskip("torch")
    values = np.random.default_rng(0).random((5, 7))
    ours = resize_bilinear(values, 11, 3)
    theirs = torch.nn.functional.interpolate(
        torch.tensor(values)[None, None], size=(11, 3), mode="bilinear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


async def test_no_color_terminal_draws_the_map_as_characters(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        await workers_done(app)
        await pilot.pause()
        assert app.no_color
        screen = app.export_screenshot()
    assert "@" in screen and "▀" not in screen


async def test_tab_moves_between_the_panes():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.focused is app.query_one(LayerTree)
        order = []
        for _ in range(4):
            await pilot.press("tab")
            order.append(app.focused.id)
        assert order == ["saliency", "steps", "curve", None]
        assert app.focused is app.query_one(LayerTree)
        await wait_until(pilot, finished(app))


@pytest.mark.slow  # runs the control
async def test_the_control_runs_after_the_analysis_and_its_verdict_and_curve_follow():
    from semiotui.engine.control import ControlSettings
    from semiotui.tui.curve import EntropyCurve
    from semiotui.tui.status import StatusLine
    from semiotui.tui.steps import StepsView

    app = SemiotuiApp(demo_workspace(16, control=ControlSettings(draws=3, images=12)), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        assert app.controller.run_state.control_state in ("waiting", "running")  # the first screen does not wait for it
        await wait_until(pilot, lambda: app.controller.run_state.control_state == "done")
        await workers_done(app)
        await pilot.pause()
        steps = app.query_one(StepsView).steps
        assert steps.control is not None and steps.control.draws == 3 and steps.control.images == 12
        assert app.query_one("#steps").border_subtitle == "vs 3 shuffled copies"
        assert app.query_one(EntropyCurve).data.control is not None
        assert "control" not in app.query_one(StatusLine).render().plain  # only while it runs
        # an empty map says so instead of drawing a blank overlay
        run = app.controller.run_state
        image, j = next((i, j) for i, row in run.rows.items() for j in np.flatnonzero(row.empty))
        content = app.explorer.saliency_content(image, module_of(run.map_names[j]), run.map_names[j])
        assert content.saliency is None and content.message.startswith("empty map")
        assert "H: none, empty map" in content.caption.plain


async def test_the_tree_never_cuts_a_number_it_drops_a_column_instead():
    import torchvision

    from semiotui.engine.data import ImageSource
    from semiotui.engine.layers import index_layers
    from semiotui.engine.workspace import InputSpec, ModelInfo, Workspace
    from semiotui.engine.analysis import AnalysisSettings
    from semiotui.engine.demo import demo_samples

    model = torchvision.models.resnet18().eval()
    spec = InputSpec((64, 64), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    images = ImageSource.from_images([image for image, _ in demo_samples("val", 2)], spec)
    index = index_layers(model, next(images.batches(1)).images)
    workspace = Workspace(model, ModelInfo(None, "state_dict", "resnet18", 11_689_512), spec, index,
                          index.default_selection(), images, AnalysisSettings(device="cpu"), control=None)
    app = SemiotuiApp(workspace, show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        tree = app.query_one(LayerTree)
        await pilot.pause()
        row = tree.nodes_by_name["layer1.0.conv1"].label.plain
        assert row.rstrip().endswith("36.9k") and len(row.rstrip()) < tree.size.width
        assert "Conv2d" not in row  # the type column gave way
        await pilot.resize_terminal(200, 40)
        await pilot.pause()
        assert "Conv2d" in tree.nodes_by_name["layer1.0.conv1"].label.plain


async def test_v_shows_the_map_alone_then_the_image_alone_and_the_colour_scale_says_what_it_means():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        view = app.query_one(SaliencyView)
        await wait_until(pilot, lambda: view.content is not None and view.content.saliency is not None)
        shown = view.render().renderables[1].plain  # the caption under the heatmap
        assert "low" in shown and "high · max" in shown
        heatmap = view.render().renderables[0]
        for expected in ("map", "image", "overlay"):
            await pilot.press("v")
            assert view.view == expected
        await pilot.press("v")
        assert view.render().renderables[0].view == "map" and heatmap.view == "overlay"
        pixels = view.render().renderables[0].pixels(8, 4)
        assert pixels.shape == (8, 8, 3)


@pytest.mark.slow  # a fresh interpreter
def test_the_statistics_library_is_imported_off_the_interface_thread_at_start_up():
    # Imported by the first superization test on the interface's thread, scipy.stats froze the screen
    # for about 2 s (benchmarks/responsiveness.py measures the stall); the app starts importing it aside, once
    # the model is open (beside PyTorch's import, the two slowed each other).
    import subprocess
    import sys

    code = """
import sys, threading
from semiotui.engine import AnalysisSettings, open_workspace
from semiotui.tui.app import SemiotuiApp
workspace = open_workspace(limit=4, settings=AnalysisSettings(device="cpu"))
assert "scipy.stats" not in sys.modules
SemiotuiApp(lambda: workspace, show_timings=False)  # opens the model later, importing PyTorch: not beside it
assert [t for t in threading.enumerate() if t.name == "semiotui-preload"] == []
app = SemiotuiApp(workspace, show_timings=False)
loader = [t for t in threading.enumerate() if t.name == "semiotui-preload"]
assert len(loader) == 1 and loader[0] is not threading.main_thread()
loader[0].join(60)
assert "scipy.stats" in sys.modules
again = SemiotuiApp(workspace, show_timings=False)
assert [t for t in threading.enumerate() if t.name == "semiotui-preload"] == []  # once per process
app.session.close(), again.session.close()
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_find_box_shows_its_whole_hint(size):
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, finished(app))
        await pilot.press("slash")
        await pilot.pause()
        placeholder = app.query_one(LayerFind).placeholder
        assert placeholder in screen_text(app)


async def test_the_status_line_at_80_columns_cuts_no_number():
    from semiotui.tui.status import StatusLine

    app = SemiotuiApp(demo_workspace(4))  # with rates, times and memory
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, finished(app))
        status = app.query_one(StatusLine)
        await wait_until(pilot, lambda: status.memory)
        shown = status.render().plain
        assert status.memory in shown and "acc " in shown


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_steps_header_stays_one_line_with_short_layer_names(size):
    from dataclasses import replace

    from semiotui.tui.steps import StepsView

    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, finished(app))
        await workers_done(app)
        view = app.query_one(StepsView)
        short = replace(view.steps, layers=[f"f.{i}" for i in range(len(view.steps.layers))])  # shown as 0, 1, …
        view.update(short)
        await pilot.pause()
        lines = [line.rstrip() for line in view.render().plain.splitlines()]
        assert lines[0].startswith("entering") and lines[0].endswith("ΔH")
        assert all(len(line) <= view.size.width for line in lines)


def test_progress_messages_merge_but_never_swallow_a_redraw_now():
    from semiotui.tui.messages import ExportProgress, MapsDrawn, RunChanged

    assert RunChanged().can_replace(RunChanged()) and RunChanged().can_replace(RunChanged(now=True))
    assert RunChanged(now=True).can_replace(RunChanged(now=True))
    assert not RunChanged(now=True).can_replace(RunChanged())  # the newer one would redraw later, not now
    assert not RunChanged().can_replace(MapsDrawn()) and MapsDrawn().can_replace(MapsDrawn())
    assert ExportProgress("writing", None, None).can_replace(ExportProgress("writing", 1, 2))
