"""Responsiveness of the explorer while the engine works: the time from a key press to the updated screen.

Opens the bundled demo (as `semiotui` with no MODEL does, on more of its images
so the engine stays busy) headless under Textual's Pilot, waits until the analysis
is running, then presses j, k and n at random moments. Each press is timed from
the key event entering the app to the first screen update that shows its effect
(the app's `_display`, called once the compositor has rendered the update): the
tree's cursor and the saliency pane; the entropy curve follows once keys pause
(`SemiotuiApp.CURVE_DELAY`). Prints the median, 90th percentile and worst, and
the longest the event loop stalled while the interface opened.

Then the keys that open and close screens, in rounds while the engine still
works: `?` (help shown), escape (the explorer again), ctrl+p (the palette
shown), enter on a layer typed there (the explorer at that layer), `g` (the
pruning screen), escape; each timed to the first screen update on the screen it
leads to. `--burn N` adds N processes that keep a core busy each, as other
programs on the machine would (the load the issue was measured under).

First, the start: a fresh interpreter opens the interface on the demo as
`semiotui` does (the workspace opened in a thread behind the first frame), and
the script prints the time from starting the interpreter to the first frame and
to the first analysed image shown, cold (PyTorch's, NumPy's, SciPy's, Textual's
and semiotui's files first dropped from the page cache with
`posix_fadvise(DONTNEED)`, as after a reboot) and warm (the same run again).

    python benchmarks/responsiveness.py [--presses 40] [--rounds 5] [--burn 0] [--images 1000] [--size 120x40]
                                        [--device auto] [--starts 2]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import os
import platform
import random
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from textual import events

from semiotui.engine import AnalysisSettings, Workspace, demo, open_workspace
from semiotui.tui.app import SemiotuiApp
from semiotui.tui.explorer import ExplorerScreen
from semiotui.tui.help import HelpScreen
from semiotui.tui.prune_screen import PruneScreen

KEYS = ("j", "k", "n")
JUMPS = ("features.conv3", "features.conv5")  # palette targets, in turn: each round moves the explorer


def demo_workspace(images: int, device: str) -> Workspace:
    """The workspace `semiotui` opens with no MODEL, on `images` of the demo's validation images."""
    workspace = open_workspace(settings=AnalysisSettings(device=device))
    return dataclasses.replace(workspace, images=demo.demo_images("val", images, workspace.spec))


START = """
import asyncio, json, os, sys, time

from semiotui.tui.app import SemiotuiApp

started, size, device = float(os.environ["STARTED"]), (int(sys.argv[1]), int(sys.argv[2])), sys.argv[3]
seen = {}


def open_demo():  # what `semiotui` with no MODEL opens
    from semiotui.engine import AnalysisSettings, open_workspace

    return open_workspace(settings=AnalysisSettings(device=device))


async def main():
    app = SemiotuiApp(open_demo)
    display = app._display

    def timed_display(screen, renderable):
        display(screen, renderable)
        now = time.time() - started
        seen.setdefault("first frame", now)
        run = app.controller and app.controller.run_state
        if run is not None and run.done and app.screen is app.explorer:
            seen.setdefault("first image", now)

    app._display = timed_display
    async with app.run_test(size=size) as pilot:
        while "first image" not in seen:
            await pilot.pause(0.01)
    app.session.close(timeout=0.5)

asyncio.run(main())
print(json.dumps(seen), flush=True)
os._exit(0)  # the analysis may still be ending its batch: not waited for
"""
COLD_PACKAGES = ("torch", "torchvision", "numpy", "scipy", "textual", "rich", "semiotui")


def drop_from_page_cache(packages: tuple[str, ...]) -> int:
    """Ask the kernel to forget the cached pages of the packages' files (no root needed); how many files."""
    files = 0
    for name in packages:
        spec = importlib.util.find_spec(name)
        for folder in spec.submodule_search_locations or []:
            for path in Path(folder).rglob("*"):
                if path.is_file():
                    with open(path, "rb") as file:
                        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                    files += 1
    return files


def start_times(size: tuple[int, int], device: str, cold: bool) -> dict[str, float]:
    """Seconds from starting a fresh interpreter to the first frame and to the first analysed image shown."""
    if cold:
        drop_from_page_cache(COLD_PACKAGES)
    started = time.time()
    done = subprocess.run([sys.executable, "-c", START, str(size[0]), str(size[1]), device], capture_output=True,
                          text=True, env=os.environ | {"STARTED": repr(started)}, timeout=600)
    if done.returncode:
        raise SystemExit(f"the start could not be timed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.splitlines()[-1])


def burn(stop: multiprocessing.Event) -> None:
    """Keep one core busy until `stop` (another program's load)."""
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def send(app: SemiotuiApp, key: str) -> float:
    """Put a key press into the app as the terminal's driver does; returns when it was sent."""
    character = {"question_mark": "?", "escape": "\x1b", "enter": "\r"}.get(key, key if len(key) == 1 else None)
    event = events.Key(key, character)
    event.set_sender(app)
    start = time.perf_counter()
    app._driver.send_message(event)
    return start


async def painted(shown: list, start: float, effect) -> float:
    """The time of the first screen update after `start` for which `effect(screen, layer)` holds."""
    while True:
        done = next((t for t, screen, layer, _ in shown[-40:] if t > start and effect(screen, layer)), None)
        if done is not None:
            return done
        await asyncio.sleep(0.0005)


async def screen_keys(app: SemiotuiApp, shown: list, rounds: int) -> dict[str, list[float]]:
    """Latencies in seconds of the keys that open and close screens (module docstring), `rounds` of each."""
    from textual.command import CommandList, CommandPalette

    on = {"explorer": lambda s, _: isinstance(s, ExplorerScreen), "help": lambda s, _: isinstance(s, HelpScreen),
          "palette": lambda s, _: isinstance(s, CommandPalette), "prune": lambda s, _: isinstance(s, PruneScreen)}
    latencies: dict[str, list[float]] = {}

    async def timed(name: str, key: str, effect) -> None:
        start = send(app, key)
        latencies.setdefault(name, []).append(await painted(shown, start, effect) - start)
        await asyncio.sleep(0.3)  # as a user reads what came up

    for round in range(rounds):
        await timed("?", "question_mark", on["help"])
        await timed("escape (help)", "escape", on["explorer"])
        await timed("ctrl+p", "ctrl+p", on["palette"])
        target = JUMPS[round % len(JUMPS)]
        for character in f"layer: {target}":
            send(app, character)
        hits = app.screen.query_one(CommandList)
        while not (hits.option_count and str(hits.get_option_at_index(0).prompt).splitlines()[0].endswith(target)):
            await asyncio.sleep(0.01)
        send(app, "down")
        await asyncio.sleep(0.3)
        await timed("palette jump (enter)", "enter", lambda s, layer: isinstance(s, ExplorerScreen) and layer == target)
        await timed("g", "g", on["prune"])
        await timed("escape (pruning)", "escape", on["explorer"])
    return latencies


async def measure(app: SemiotuiApp, size: tuple[int, int], presses: int, rounds: int,
                  seed: int) -> tuple[list[float], int, float, dict[str, list[float]]]:
    """Latencies in seconds of `presses` key presses, how many came while the analysis ran, the longest the
    event loop stalled from opening until 3 s after the first batch (the steps' first tests included), and the
    latencies of the screen keys (`screen_keys`)."""
    shown: list[tuple[float, object, str | None, int]] = []
    display = app._display

    def timed_display(screen, renderable) -> None:
        display(screen, renderable)
        if renderable is not None:
            shown.append((time.perf_counter(), screen, app.explorer.layer, app.explorer.image))

    app._display = timed_display  # type: ignore[method-assign]
    rng = random.Random(seed)
    latencies, busy = [], 0
    async with app.run_test(size=size) as pilot:
        stall, until = 0.0, None
        while until is None or time.perf_counter() < until:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            stall = max(stall, time.perf_counter() - before - 0.01)
            if until is None and app.controller.run_state is not None and app.controller.run_state.done > 0:
                until = time.perf_counter() + 3
        for i in range(presses):
            await asyncio.sleep(rng.uniform(0.05, 0.25))
            before = (app.explorer.layer, app.explorer.image)
            busy += app.controller.run_state.running
            start = send(app, KEYS[i % len(KEYS)])
            while not any(t > start and (layer, image) != before for t, _, layer, image in shown[-20:]):
                await asyncio.sleep(0.0005)
            done = next(t for t, _, layer, image in shown if t > start and (layer, image) != before)
            latencies.append(done - start)
        screens = await screen_keys(app, shown, rounds)
        run = app.controller.run_state
        print(f"analysis: {run.done}/{run.total} images at {run.rate:.1f} img/s (still running: {run.running})")
        await pilot.exit(0)
    app.session.close()  # as `semiotui` does on quitting: the analysis stops after its current batch
    return latencies, busy, stall, screens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--images", type=int, default=1000, help="demo images to analyse (keeps the engine busy)")
    parser.add_argument("--size", default="120x40", help="terminal size, COLSxROWS")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the keys that open and close screens")
    parser.add_argument("--burn", type=int, default=0, help="processes that keep a core busy each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--starts", type=int, default=2, help="warm starts timed after the cold one (0: none)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.starts:  # before the burners: the load they add is the keys' test
        for run in range(args.starts + 1):
            times = start_times((width, height), args.device, cold=run == 0)
            print(f"start, {'cold' if run == 0 else 'warm'}: first frame {times['first frame']:.2f} s, "
                  f"first analysed image {times['first image']:.2f} s")
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=burn, args=(stop,), daemon=True) for _ in range(args.burn)]
    for process in burners:
        process.start()
    try:
        app = SemiotuiApp(demo_workspace(args.images, args.device))
        latencies, busy, stall, screens = asyncio.run(measure(app, (width, height), args.presses, args.rounds,
                                                              args.seed))
    finally:
        stop.set()
    print(f"{platform.node()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}, "
          f"{args.burn} burning processes, load {os.getloadavg()[0]:.1f} at the end")
    print(f"{len(latencies)} presses of {', '.join(KEYS)} ({busy} while the engine worked): {summary(latencies)}")
    for name, values in screens.items():
        print(f"{name:>22}: {summary(values)}")
    print(f"longest stall of the event loop from opening to 3 s after the first batch: {1000 * stall:.0f} ms")


def summary(latencies: list[float]) -> str:
    """Median, 90th percentile and worst, in milliseconds."""
    ms = sorted(1000 * v for v in latencies)
    return f"median {statistics.median(ms):.1f} ms, p90 {ms[int(0.9 * (len(ms) - 1))]:.1f} ms, worst {ms[-1]:.1f} ms"


if __name__ == "__main__":
    main()
