"""Ctrl-C and SIGTERM during a long command: stop after the current step, or at once when asked twice."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Interrupts:
    """While installed, Ctrl-C or SIGTERM sets `cancel` (the work stops after its current step); a second aborts.

    `status` is then the exit status the command returns: 128 + the signal, as a shell reports it.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():  # only there can Python handle signals
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    @property
    def status(self) -> int:
        return 0 if self.received is None else 128 + self.received

    def _handle(self, number: int, frame: object) -> None:
        if self.cancel.is_set():
            raise KeyboardInterrupt
        self.received = number
        self.cancel.set()  # said by the command's loop at its next event: printing here could tear a progress bar


@contextmanager
def interruptible_imports() -> Iterator[list[int]]:
    """Ctrl-C while modules import is a KeyboardInterrupt, even where a C extension reports it as another error.

    NumPy's C initialisation turns it into an ImportError; the handler here notes the signal in the list it
    yields, so that the error is said as an interrupt: here, or by whoever catches it first (`cli.run`, around a
    command whose first lines import PyTorch). Only where Ctrl-C has Python's default handler (not where it is
    ignored, as for a background job).
    """
    pressed: list[int] = []

    def handle(number: int, frame: object) -> None:
        pressed.append(number)
        raise KeyboardInterrupt

    own = (threading.current_thread() is threading.main_thread()
           and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if own:
        signal.signal(signal.SIGINT, handle)
    try:
        yield pressed
    except Exception:
        if pressed:
            raise KeyboardInterrupt from None
        raise
    finally:
        if own:
            signal.signal(signal.SIGINT, signal.default_int_handler)
