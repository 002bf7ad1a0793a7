"""The compare view (semiotui/docs/METHOD.md §4) in the live explorer, and maps computed for images the analysis
did not keep."""

from __future__ import annotations

import numpy as np
from helpers import demo_workspace, finished, wait_until, workers_done
from textual.widgets import OptionList

from semiotui.engine.analysis import analyse
from semiotui.engine.explain import largest_steps
from semiotui.tui.app import SemiotuiApp
from semiotui.tui.compare import CompareScreen, GroupPlot, MistakeList, Significance
from semiotui.tui.layer_tree import LayerTree
from semiotui.tui.saliency import SaliencyView

MISTAKE = 7  # arrow_0007, predicted square: the demo's one mistake in its first 40 images


async def test_compare_lists_the_mistake_and_shows_it_beside_a_correct_image_of_its_class():
    workspace = demo_workspace(40, batch_size=8)
    app = SemiotuiApp(workspace, show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        mistakes = screen.query_one(MistakeList)
        assert [mistakes.get_option_at_index(i).id for i in range(mistakes.option_count)] == [str(MISTAKE)]
        assert mistakes.border_title == "Misclassified: 1 of 40"
        await pilot.press("down")
        assert app.explorer.image == MISTAKE
        await workers_done(app)
        await pilot.pause()
        this, other = screen.query_one("#this-map", SaliencyView), screen.query_one("#partner-map", SaliencyView)
        assert this.content.saliency is not None
        assert other.content.saliency is not None or other.content.message.startswith("empty map")
        assert other.border_title == "Correct arrow"
        assert "true arrow ✓" in other.content.caption.plain and "true arrow ✗" in this.content.caption.plain
        # Its map is drawn at the layer its entropy drops into most, which the tree marks.
        row = app.controller.run_state.rows[MISTAKE]
        step = int(largest_steps(row.entropy[None])[0])
        layer = app.controller.run_state.map_names[step]
        np.testing.assert_array_equal(this.content.saliency, row.maps[layer])
        assert app.query_one(LayerTree).largest == layer
        assert f"largest drop into {layer.rsplit('.', 1)[-1]}" in screen.query_one(GroupPlot).data.title
        # The finding is stated with its control (none here) and its n.
        significance = screen.query_one(Significance).render().plain
        assert "No control was run, so no step is called superization" in significance
        assert "over the 40 of 40 images" in significance
        await pilot.press("2")
        plot = screen.query_one(GroupPlot)
        assert plot.data.title == "mean entropy per true class"
        assert len(plot.data.lines) == len({r.label for r in app.controller.run_state.rows.values()})
        await pilot.press("right")
        assert screen.view == "outcomes"
        assert "they part most at" in plot.data.title and plot.data.marks
        legend = [line.label for line in plot.data.lines if line.label]
        assert legend == ["95% CI, correct", "correct (39)", "wrong (1)"]
        await pilot.press("enter")  # back to the explorer, at the mistake's largest drop
        assert not isinstance(app.screen, CompareScreen)
        assert app.explorer.image == MISTAKE and app.explorer.layer == layer


async def test_enter_opens_the_first_mistake_when_the_current_image_is_none():
    """Enter ("Open" in the footer) acts at once, not only once an arrow key highlighted a mistake (issue 22)."""
    app = SemiotuiApp(demo_workspace(40, batch_size=8), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        assert app.explorer.image != MISTAKE
        await pilot.press("c")
        assert app.screen.query_one(MistakeList).highlighted is None
        await pilot.press("enter")
        assert not isinstance(app.screen, CompareScreen)
        assert app.explorer.image == MISTAKE


async def test_compare_follows_the_analysis_as_results_arrive():
    workspace = demo_workspace(16, batch_size=4, gated=True)
    app = SemiotuiApp(workspace, show_timings=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        await pilot.pause(app.explorer.SLOW_INTERVAL)  # the view is redrawn at most once a second: the next batch redraws it
        workspace.images.allow(1)
        await wait_until(pilot, lambda: screen.comparison is not None)
        assert len(screen.comparison.rows) < 16
        workspace.images.open()
        await wait_until(pilot, finished(app))
        await pilot.pause(0.2)
        assert len(screen.comparison.rows) == 16
        assert screen.query_one(MistakeList).border_title == "Misclassified: 1 of 16"
        assert "over the 16 of 16 images" in screen.query_one(Significance).render().plain
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)


async def test_maps_beyond_the_kept_images_are_computed_when_shown():
    workspace = demo_workspace(16)
    app = SemiotuiApp(workspace, show_timings=False, keep_maps=2)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        view = app.query_one(SaliencyView)
        await pilot.press("n", "n", "n")
        assert app.explorer.image == 3
        await wait_until(pilot, lambda: view.content.saliency is not None)
        assert "image 4/16" in view.content.caption.plain
        # Picking the mistake in the compare view computes its map and its partner's.
        await pilot.press("c", "down")
        rows = app.controller.run_state.rows
        views = [app.screen.query_one(f"#{which}-map", SaliencyView) for which in ("this", "partner")]

        def drawn(view: SaliencyView) -> bool:  # its map, or why none is needed (an empty map is not drawn)
            return view.content is not None and (view.content.saliency is not None
                                                 or view.content.message.startswith("empty map"))

        await wait_until(pilot, lambda: all(drawn(view) for view in views))
        await workers_done(app)
        await pilot.pause()
        assert rows[MISTAKE].maps is not None and views[0].content.saliency is not None
        with_maps = {i for i, row in rows.items() if row.maps is not None}
        assert {0, 1, 3, MISTAKE} <= with_maps <= {0, 1, 2, 3, MISTAKE, 15}  # kept, or shown (2 in passing)
    settings = app.controller.run_state.settings
    expected = analyse(workspace.model, workspace.images.batches(16), workspace.layers, settings, keep_maps=16)
    for i in (3, MISTAKE):
        for name, thumbnail in rows[i].maps.items():
            np.testing.assert_allclose(thumbnail, expected.images[i].maps[name], rtol=1e-4, atol=1e-6)


async def test_highlighting_a_mistake_moves_the_explorer_to_it_too():
    app = SemiotuiApp(demo_workspace(16), show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, finished(app))
        await pilot.press("c")
        listing = app.screen.query_one(OptionList)
        assert listing.highlighted is None  # the current image (0) is right
        await pilot.press("down")
        assert app.explorer.image == MISTAKE
        await pilot.press("escape", "n")
        assert app.explorer.image == MISTAKE + 1
        await pilot.press("c")
        assert app.screen.query_one(OptionList).highlighted is None
        await workers_done(app)


async def test_a_small_terminal_shows_one_readable_pane_at_a_time():
    def shown(screen: CompareScreen) -> list[str]:
        return [id for id in ("mistakes", "this-map", "compare-curve", "significance")
                if screen.query_one(f"#{id}").region.height > 0]

    app = SemiotuiApp(demo_workspace(16), show_timings=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, finished(app))
        await pilot.press("c")
        screen = app.screen
        await pilot.pause()
        assert shown(screen) == ["mistakes", "this-map"] and app.focused is screen.query_one(MistakeList)
        await pilot.press("right")  # the next curve: the curves come into view, the whole screen wide
        assert screen.view == "classes"
        await pilot.pause()
        assert shown(screen) == ["compare-curve"]
        curve = screen.query_one(GroupPlot).region
        assert curve.width == 80 and curve.height >= 18
        await pilot.press("w")
        await pilot.pause()
        assert shown(screen) == ["significance"]
        await pilot.press("w")
        await pilot.pause()
        assert shown(screen) == ["mistakes", "this-map"] and app.focused is screen.query_one(MistakeList)
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert shown(screen) == ["mistakes", "this-map", "compare-curve", "significance"]
        assert "w" not in screen.active_bindings  # nothing to switch: the footer does not offer it
