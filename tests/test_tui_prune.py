"""The pruning screen driven with Pilot: start, live steps, stop, save, leaving while it runs."""

from __future__ import annotations

import gc
import json

import pytest
import torch
from helpers import demo_workspace, finished, open_pruning, press, run_from_palette, screen_text, wait_until
from textual.widgets import DataTable, Input

from semiotui.engine import demo
from semiotui.tui.app import SemiotuiApp
from semiotui.tui.confirm import ConfirmQuit
from semiotui.tui.prune_screen import PruneScreen


@pytest.fixture(autouse=True)
def _small_demo_splits(monkeypatch) -> None:
    """Few demo images to fine-tune and measure on."""
    monkeypatch.setattr(demo, "TRAIN_IMAGES", 8)
    monkeypatch.setattr(demo, "VAL_IMAGES", 8)


@pytest.mark.slow  # prunes, with fine-tuning
async def test_start_shows_steps_live_stop_ends_after_the_step_and_save_writes_a_loadable_model(tmp_path):
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_pruning(pilot)
        await press(pilot, "s")
        assert screen.running
        assert gc.get_freeze_count() > 0  # what existed before the run is kept out of full collections
        table = screen.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count >= 1)
        await press(pilot, "x")
        await wait_until(pilot, lambda: not screen.running)
        log = screen.pruned[1]
        assert gc.get_freeze_count() == 0
        assert log.stopped_because == "stopped by the user"
        assert table.row_count == len(log.steps) <= 2
        assert "stopped by the user" in str(screen.query_one("#prune-status").render())
        await wait_until(pilot, lambda: not app.session.scheduler.jobs("prune"))  # it ends just after its last event

        await pilot.click("#start")  # a new run would discard the unsaved model: asks, and "no" keeps it
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        assert "not saved" in app.screen.message
        await press(pilot, "n")
        await wait_until(pilot, lambda: app.screen is screen)
        assert not screen.running and screen.pruned[1] is log

        out = tmp_path / "pruned.pt"
        screen.query_one("#save-path", Input).value = str(out)
        await pilot.pause()  # the save bar is laid out
        await pilot.click("#save")
        await wait_until(pilot, lambda: screen.saved == out)
        saved = json.loads(out.with_suffix(".json").read_text())
        model = torch.load(out, weights_only=False)
        assert sum(p.numel() for p in model.parameters()) == saved["final"]["parameters"]
        assert saved["preprocess"]["input_size"] == [64, 64]

        await pilot.pause(0.3)  # a button ignores clicks during its 0.2 s press effect
        await pilot.click("#save")  # the same name again: asks, and "no" keeps the files
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        before = out.stat().st_mtime_ns
        await pilot.press("n")
        assert app.screen is screen and out.stat().st_mtime_ns == before
        await pilot.press("escape")
        assert not isinstance(app.screen, PruneScreen)

        await press(pilot, "g")  # back as it was left: the run, its steps and where it was saved
        await wait_until(pilot, lambda: isinstance(app.screen, PruneScreen))
        assert app.screen is screen and screen.saved == out and table.row_count == len(log.steps)
        await press(pilot, "escape")
        await press(pilot, "m")  # other settings: the next visit measures with them, on a new screen
        await wait_until(pilot, finished(app))
        await press(pilot, "g")
        await wait_until(pilot, lambda: isinstance(app.screen, PruneScreen))
        assert app.screen is not screen and app.screen.pruned is None
        await wait_until(pilot, lambda: not screen.is_attached)  # the old screen is removed (its removal is a message)


async def test_leaving_while_it_runs_asks_then_stops_the_run_at_once_and_frees_the_model():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_pruning(pilot, finetune="100000")  # a step far longer than the test
        await press(pilot, "s")
        assert screen.running
        await wait_until(pilot, lambda: "fine-tuning" in screen._activity)
        await press(pilot, "q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        assert "Stop it and quit" in app.screen.message
        await press(pilot, "n")
        await wait_until(pilot, lambda: app.screen is screen)
        await press(pilot, "escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        assert "Stop it and go back" in app.screen.message
        await press(pilot, "y")
        await wait_until(pilot, lambda: not isinstance(app.screen, (ConfirmQuit, PruneScreen)))
        assert screen.job.cancel.is_set() and screen.job.aborted
        assert gc.get_freeze_count() == 0
        await wait_until(pilot, lambda: screen.job.ended.is_set(), timeout=10)  # within a batch, not the step
        await press(pilot, "g")  # what was given up is not shown again
        await wait_until(pilot, lambda: isinstance(app.screen, PruneScreen))
        assert app.screen is not screen and not app.screen.running and not app.screen.steps


async def test_the_palette_opens_it_and_bad_settings_are_named_without_starting():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        await run_from_palette(pilot, "prune", "Prune")
        await wait_until(pilot, lambda: isinstance(app.screen, PruneScreen))
        screen = app.screen
        screen.query_one("#tolerance", Input).value = "two"
        await pilot.click("#start")
        status = screen.query_one("#prune-status")
        assert "tolerance: 'two' is not a number" in str(status.render()) and status.has_class("-error")
        screen.query_one("#tolerance", Input).value = "0.02"
        screen.query_one("#target", Input).value = "5"
        await press(pilot, "s")
        await wait_until(pilot, lambda: "target params must be between 0 and 1" in str(status.render()))
        assert not screen.running and screen.job is None


@pytest.mark.slow  # prunes, then analyses both models
async def test_the_pruned_model_is_compared_with_the_original_side_by_side():
    from semiotui.tui.curve import BackgroundPlot
    from semiotui.tui.models_screen import ModelsScreen
    from semiotui.tui.saliency import SaliencyView

    app = SemiotuiApp(demo_workspace(8), show_timings=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await wait_until(pilot, finished(app))
        screen = await open_pruning(pilot, **{"max-steps": "1", "tolerance": "1"})
        await press(pilot, "s")
        await wait_until(pilot, lambda: screen.pruned is not None, timeout=180)
        assert not any(plot.can_focus for plot in screen.query(BackgroundPlot))  # Tab skips the plots
        assert screen.leaving_question("go back") == "The pruned model is not saved. Go back anyway?"
        screen.query_one("#save-path", Input).value = "  "
        screen.save()
        assert "type a file name to save the pruned model as" in str(screen.query_one("#prune-status").render())
        screen.action_compare()  # (the button may be scrolled out of view at this size)
        await wait_until(pilot, lambda: isinstance(app.screen, ModelsScreen) and app.screen.is_mounted, timeout=120)
        await pilot.pause()
        models = app.screen
        c = models.comparison
        assert c.names == ("original", "pruned") and c.parameters[1] < c.parameters[0] and c.images == 8
        assert models.query_one(DataTable).row_count == len(c.layers)
        assert "original:" in str(models.query_one("#models-summary").render())
        await pilot.pause()
        a, b = models.query_one("#model-a-map", SaliencyView), models.query_one("#model-b-map", SaliencyView)
        assert a.content.image is not None and b.content.image is not None
        await press(pilot, "escape")
        assert app.screen is screen


async def test_tab_follows_the_form_and_the_screens_keys_work_from_its_number_fields():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_pruning(pilot)
        await pilot.pause()
        assert [w.id for w in screen.focus_chain] == [
            "criterion", "target", "tolerance", "max-steps", "finetune", "start", "prune-steps"]
        assert app.focused.id == "criterion"
        await pilot.press("tab", *"0.5x")  # x is no part of a number: the field leaves it to the screen
        assert screen.query_one("#target", Input).value == "0.5"
        assert app.focused.id == "target" and "s Start" in screen_text(app)  # shown in the footer, and it works
        await press(pilot, "s")
        assert screen.running and screen.run_settings.target_params == 0.5
        await press(pilot, "x")
        await wait_until(pilot, lambda: not screen.running)


async def test_the_palette_offers_the_screens_actions_from_a_field():
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_pruning(pilot)
        screen.query_one("#tolerance", Input).focus()
        await run_from_palette(pilot, "compare", "Compare with the original")
        await wait_until(pilot, lambda: app.screen is screen)
        assert "compare needs a pruned model" in str(screen.query_one("#prune-status").render())


@pytest.mark.slow  # prunes
@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_save_bar_shows_the_whole_file_name(size):
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=size) as pilot:
        screen = await open_pruning(pilot, target="0.99")
        await press(pilot, "s")
        await wait_until(pilot, lambda: screen.pruned is not None)
        await pilot.pause()
        field = screen.query_one("#save-path", Input)
        assert field.value == "./demo-pruned.pt" and field.value in screen_text(app)


async def test_the_status_says_which_images_pruning_measures_and_why_not_the_explorers(monkeypatch):
    phases = []
    monkeypatch.setattr(PruneScreen, "on_prune_phase", lambda screen, message: phases.append(message.text))
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_pruning(pilot, target="0.99")
        await press(pilot, "s")
        await wait_until(pilot, lambda: not screen.running)
    measuring = next(text for text in phases if text.startswith("measuring the original model"))
    assert "8 held-out images" in measuring and "the explorer shows 4" in measuring
