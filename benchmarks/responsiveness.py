"""Responsiveness of the explorer while the engine works: the time from a key press to the updated screen.

Opens the bundled demo (as `semiotui` with no MODEL does, on more of its images
so the engine stays busy) headless under Textual's Pilot, waits until the analysis
is running, then presses j, k and n at random moments. Each press is timed from
the key event entering the app to the first screen update that shows its effect
(the app's `_display`, called once the compositor has rendered the update): the
tree's cursor and the saliency pane; the entropy curve follows once keys pause
(`SemiotuiApp.CURVE_DELAY`). Prints the median, 90th percentile and worst, and
the longest the event loop stalled while the interface opened.

    python benchmarks/responsiveness.py [--presses 40] [--images 1000] [--size 120x40] [--device auto]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import platform
import random
import statistics
import time

import torch
from textual import events

from semiotui.engine import AnalysisSettings, Workspace, demo, open_workspace
from semiotui.tui.app import SemiotuiApp

KEYS = ("j", "k", "n")


def demo_workspace(images: int, device: str) -> Workspace:
    """The workspace `semiotui` opens with no MODEL, on `images` of the demo's validation images."""
    workspace = open_workspace(settings=AnalysisSettings(device=device))
    return dataclasses.replace(workspace, images=demo.demo_images("val", images, workspace.spec))


async def measure(app: SemiotuiApp, size: tuple[int, int], presses: int, seed: int) -> tuple[list[float], int, float]:
    """Latencies in seconds of `presses` key presses, how many came while the analysis ran, and the longest
    the event loop stalled from opening until 3 s after the first batch (the steps' first tests included)."""
    shown: list[tuple[float, str | None, int]] = []
    display = app._display

    def timed_display(screen, renderable) -> None:
        display(screen, renderable)
        if renderable is not None:
            shown.append((time.perf_counter(), app.explorer.layer, app.explorer.image))

    app._display = timed_display  # type: ignore[method-assign]
    rng = random.Random(seed)
    latencies, busy = [], 0
    async with app.run_test(size=size) as pilot:
        stall, until = 0.0, None
        while until is None or time.perf_counter() < until:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            stall = max(stall, time.perf_counter() - before - 0.01)
            if until is None and app.explorer.run_state is not None and app.explorer.run_state.done > 0:
                until = time.perf_counter() + 3
        for i in range(presses):
            await asyncio.sleep(rng.uniform(0.05, 0.25))
            before = (app.explorer.layer, app.explorer.image)
            busy += app.explorer.run_state.running
            key = KEYS[i % len(KEYS)]
            start = time.perf_counter()
            event = events.Key(key, key)
            event.set_sender(app)
            app._driver.send_message(event)
            while not any(t > start and (layer, image) != before for t, layer, image in shown[-20:]):
                await asyncio.sleep(0.0005)
            done = next(t for t, layer, image in shown if t > start and (layer, image) != before)
            latencies.append(done - start)
        run = app.explorer.run_state
        print(f"analysis: {run.done}/{run.total} images at {run.rate:.1f} img/s")
        await pilot.exit(0)
    app.session.close()  # as `semiotui` does on quitting: the analysis stops after its current batch
    return latencies, busy, stall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--images", type=int, default=1000, help="demo images to analyse (keeps the engine busy)")
    parser.add_argument("--size", default="120x40", help="terminal size, COLSxROWS")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    app = SemiotuiApp(demo_workspace(args.images, args.device))
    latencies, busy, stall = asyncio.run(measure(app, (width, height), args.presses, args.seed))
    ms = sorted(1000 * v for v in latencies)
    print(f"{platform.node()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}")
    print(f"{len(ms)} presses ({busy} while the engine worked): median {statistics.median(ms):.1f} ms, "
          f"p90 {ms[int(0.9 * (len(ms) - 1))]:.1f} ms, worst {ms[-1]:.1f} ms")
    print(f"longest stall of the event loop from opening to 3 s after the first batch: {1000 * stall:.0f} ms")


if __name__ == "__main__":
    main()
