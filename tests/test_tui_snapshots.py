"""Snapshots of the explorer on the demo, at 120×40 and 80×24, once the analysis has finished.

The app runs with `show_timings=False` (no rates, times or memory on screen) and the
snapshot is taken after the analysis and the curve's drawing have finished, so
the screen depends only on the model and the images.
"""

from __future__ import annotations

import asyncio

from helpers import demo_workspace, workers_done

from semiotui.tui.app import SemiotuiApp


async def analysis_finished(pilot) -> None:
    app = pilot.app
    while app.controller.run_state is None or not app.controller.run_state.finished:
        await asyncio.sleep(0.05)
    await workers_done(app)
    await pilot.pause(0.3)
    await workers_done(app)
    await pilot.pause()


def test_main_screen_at_120x40(snap_compare):
    app = SemiotuiApp(demo_workspace(16), show_timings=False)
    assert snap_compare(app, terminal_size=(120, 40), run_before=analysis_finished)


def test_main_screen_at_80x24_scrolls_its_panes(snap_compare):
    app = SemiotuiApp(demo_workspace(16), show_timings=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=analysis_finished)


def test_next_image_and_layer_at_120x40(snap_compare):
    async def browse(pilot) -> None:
        await analysis_finished(pilot)
        await pilot.press("n", "j", "j", "j")
        await analysis_finished(pilot)

    app = SemiotuiApp(demo_workspace(16), show_timings=False)
    assert snap_compare(app, terminal_size=(120, 40), run_before=browse)


def test_help_screen_at_80x24(snap_compare):
    async def help(pilot) -> None:
        await analysis_finished(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    app = SemiotuiApp(demo_workspace(16), show_timings=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=help)


def test_compare_view_on_the_mistake_at_120x40(snap_compare):
    async def compare(pilot) -> None:
        await analysis_finished(pilot)
        await pilot.press("c", "down")
        await analysis_finished(pilot)

    app = SemiotuiApp(demo_workspace(16), show_timings=False)
    assert snap_compare(app, terminal_size=(120, 40), run_before=compare)


def test_compare_view_at_80x24_shows_the_curves_alone(snap_compare):
    async def curves(pilot) -> None:
        await analysis_finished(pilot)
        await pilot.press("c", "down", "w")
        await analysis_finished(pilot)

    app = SemiotuiApp(demo_workspace(16), show_timings=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=curves)
