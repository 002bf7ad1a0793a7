"""Pauses of the interface while the pruning screen runs: event-loop stalls and full garbage collections.

Opens the bundled demo headless under Textual's Pilot, waits for its analysis,
opens the pruning screen (`g`) and starts a run that keeps going (tolerance 1,
target 2% of the parameters). For `--seconds` it then records every full
garbage collection (its duration: the interface's thread waits on it) and the
event loop's stalls (how late a 10 ms tick comes). It runs twice, each in a
fresh process: as the screen does (what existed before the run is frozen out of
full collections) and without that freeze, and prints both.

    python benchmarks/pruning_pauses.py [--seconds 60] [--images 32]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from responsiveness import demo_workspace  # noqa: E402  (a sibling script)


def record_collections() -> list[float]:
    """Durations of full (generation 2) collections from now on, in seconds."""
    durations: list[float] = []
    started: list[float] = []

    def callback(phase: str, info: dict) -> None:
        if info["generation"] == 2:
            if phase == "start":
                started[:] = [time.perf_counter()]
            elif started:
                durations.append(time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    return durations


async def measure(seconds: float, images: int) -> tuple[list[float], list[float], int]:
    from textual.widgets import Input

    from semiotui.tui.app import SemiotuiApp
    from semiotui.tui.prune_screen import PruneScreen

    app = SemiotuiApp(demo_workspace(images, "cpu"))
    async with app.run_test(size=(120, 40)) as pilot:
        while app.controller.run_state is None or not app.controller.run_state.finished:
            await asyncio.sleep(0.1)
        await pilot.press("g")
        while not isinstance(app.screen, PruneScreen):
            await asyncio.sleep(0.05)
        screen = app.screen
        for id, value in {"target": "0.02", "tolerance": "1", "finetune": "5"}.items():
            screen.query_one(f"#{id}", Input).value = value
        screen.action_start()
        collections = record_collections()
        stalls: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and screen.running:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            stalls.append(time.perf_counter() - before - 0.01)
        steps = len(screen.steps)
        screen.action_stop()
        await pilot.exit(0)
    app.session.close()  # as `semiotui` does on quitting: the running job stops after its current step
    return list(collections), stalls, steps


def run_once(seconds: float, images: int, freeze: bool) -> None:
    torch.set_num_threads(1)
    if not freeze:
        from semiotui.tui import prune_screen

        prune_screen.gc = types.SimpleNamespace(freeze=lambda: None, unfreeze=lambda: None)
    collections, stalls, steps = asyncio.run(measure(seconds, images))
    ms = sorted(1000 * v for v in stalls)
    label = "freeze (as shipped)" if freeze else "no freeze"
    worst_gc = max(collections, default=0) * 1000
    print(f"{label:20} {steps:5d} {len(collections):8d} {worst_gc:9.0f} ms "
          f"{statistics.median(ms):9.1f} ms {ms[int(0.99 * (len(ms) - 1))]:8.1f} ms {ms[-1]:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--images", type=int, default=32, help="demo images the explorer analyses first")
    parser.add_argument("--once", choices=("freeze", "no-freeze"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        run_once(args.seconds, args.images, args.once == "freeze")
        return
    print(f"{platform.node()}, torch {torch.__version__}, pruning with 1 thread, {args.seconds:.0f} s each")
    print(f"{'':20} {'steps':>5} {'full gc':>8} {'worst gc':>12} {'median stall':>12} "
          f"{'p99 stall':>11} {'worst stall':>11}")
    for mode in ("no-freeze", "freeze"):
        subprocess.run([sys.executable, __file__, "--once", mode, "--seconds", str(args.seconds),
                        "--images", str(args.images)], check=True)


if __name__ == "__main__":
    main()
