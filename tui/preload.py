"""Libraries needed later, imported in a background thread at start-up, so that no key press waits for them.

`scipy.stats` takes about 2 s to import on a small machine. The interface first
needs it for the superization tests, on its own thread, a second or two after
it opens: imported there, it froze the screen for 2 s. Started once the
model is open, the import overlaps the first batch. (The headless
commands import it where they need it: beside the analysis, on two cores, the
import slowed `semiotui report` by a second.)
"""

from __future__ import annotations

import importlib
import threading

_started = threading.Lock()
_thread: threading.Thread | None = None


def start() -> None:
    """Begin importing in the background, once per process."""
    global _thread
    with _started:
        if _thread is None:
            _thread = threading.Thread(target=importlib.import_module, args=("scipy.stats",),
                                       name="semiotui-preload", daemon=True)
            _thread.start()
