"""The interface paints its first frame before PyTorch is imported, and fills in once the workspace is open.

Run in a fresh interpreter: this one has imported PyTorch long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

FIRST_FRAME = """
import asyncio, json, sys, threading

from semiotui.tui.app import SemiotuiApp
from semiotui.tui.loading import LOADING, LoadingScreen

seen = {"torch on import": "torch" in sys.modules}
gate = threading.Event()


def open_demo():
    gate.wait(60)  # the first frame is checked before anything loads
    from helpers import demo_workspace

    return demo_workspace(4)


async def main():
    app = SemiotuiApp(open_demo, show_timings=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        seen["loading"] = isinstance(screen, LoadingScreen) and str(screen.query_one("#status").render()) == LOADING
        seen["torch at the first frame"] = "torch" in sys.modules
        gate.set()
        for _ in range(1200):
            if app.controller is not None and app.controller.run_state is not None:
                break
            await pilot.pause(0.05)
        seen["explorer"] = app.screen is app.explorer
    app.session.close()


asyncio.run(main())
print(json.dumps(seen))
"""


@pytest.mark.slow  # a fresh interpreter
def test_the_first_frame_is_painted_before_pytorch_is_imported_and_the_explorer_follows():
    done = subprocess.run([sys.executable, "-c", FIRST_FRAME], cwd=TESTS, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"torch on import": False, "loading": True, "torch at the first frame": False, "explorer": True}


async def test_a_workspace_that_fails_to_open_ends_the_app_with_its_error():
    from semiotui.tui.app import SemiotuiApp

    def broken():
        raise ValueError("not a model")

    app = SemiotuiApp(broken, show_timings=False)
    async with app.run_test(size=(80, 24)) as pilot:
        while app.is_running:
            await pilot.pause(0.05)
    assert app.return_code == 1 and str(app.failure) == "not a model" and app.controller is None


async def test_quitting_while_the_workspace_opens_ends_at_once():
    import threading

    from semiotui.tui.app import SemiotuiApp

    gate = threading.Event()
    app = SemiotuiApp(lambda: gate.wait(30) and None, show_timings=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    gate.set()  # the opening thread ends on its own; nothing waits for it
    assert app.return_code == 0 and app.controller is None and app.failure is None
