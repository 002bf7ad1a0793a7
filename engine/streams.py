"""Running a stream of engine events to its end: the one loop for callers that want its outcome.

A stream is one of the engine's generators (`stream_analysis`, `stream_control`, `greedy_prune`) or a session
job's events as the caller's thread receives them (`session.job_events`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

End = TypeVar("End")


def run_to_end(events: Iterable[object], end: type[End], show: Callable[[object], object] | None = None) -> End:
    """Consume `events` to their end and return the final event of type `end`; every other event goes to `show`."""
    final = None
    for event in events:
        if isinstance(event, end):
            final = event
        elif show is not None:
            show(event)
    if final is None:
        raise AssertionError(f"the stream ended without {end.__name__}")
    return final
