"""Greedy pruning as the interface runs it: in a worker thread that reports in messages and never touches a widget."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from textual.message import Message
from torch import nn

from semiotui.engine.analysis import AnalysisSettings
from semiotui.engine.greedy import (Measure, PruneFinished, PruneLog, PruneSettings, Step, StepDone, Trying, Working,
                                   greedy_prune)
from semiotui.engine.pruning import conv_layers, prune_splits
from semiotui.engine.workspace import Workspace



class PruneWaiting(Message):
    """The explorer's analysis holds the model; pruning starts once it lets go."""


class PrunePhase(Message):
    """What the job is doing before its first step."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class PruneTrying(Message):
    """Step `step` tries to cut `layer`."""

    def __init__(self, layer: str, step: int) -> None:
        super().__init__()
        self.layer, self.step = layer, step


class PruneStep(Message):
    """A step is done, accepted or rolled back; `original` is the model before pruning."""

    def __init__(self, step: Step, original: Measure) -> None:
        super().__init__()
        self.step, self.original = step, original


class PruneEnded(Message):
    """The job ended: the best model so far and its log, or None for both when it stopped before measuring."""

    def __init__(self, model: nn.Module | None, log: PruneLog | None) -> None:
        super().__init__()
        self.model, self.log = model, log


class PruneFailed(Message):
    """The job stopped on an error."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


@dataclass
class PruneJob:
    """One run of greedy pruning, with the Events that stop it after the current step, or at once."""

    settings: PruneSettings
    analysis: AnalysisSettings
    cancel: threading.Event = field(default_factory=threading.Event)  # keeps the best model so far
    abort: threading.Event = field(default_factory=threading.Event)  # the screen is going: drop everything


def run_prune(job: PruneJob, workspace: Workspace, post: Callable[[Message], object], lock: threading.Lock) -> None:
    """Prune a copy of the workspace's model, posting one message per engine event.

    `lock` is held for the whole run: a running analysis keeps it to its end,
    and the explorer's next analysis waits for the pruning.
    """
    if not lock.acquire(blocking=False):
        post(PruneWaiting())
        while not lock.acquire(timeout=0.2):
            if job.cancel.is_set():
                post(PruneEnded(None, None))
                return
    try:
        post(PrunePhase("preparing the images"))
        train, held_out = prune_splits(workspace)
        post(PrunePhase(f"measuring the original model on {len(held_out)} images"))
        events = greedy_prune(workspace.model, train, held_out, conv_layers(workspace), job.settings,
                              job.analysis, cancel=job.cancel)
        layer = ""
        for event in events:
            if job.abort.is_set():
                events.close()  # ends the step under way: nothing of it is kept
                return
            if isinstance(event, Trying):
                layer = event.layer
                post(PruneTrying(event.layer, event.step))
            elif isinstance(event, Working):
                post(PrunePhase(f"step {event.step}: {layer}, {event.what}"))
            elif isinstance(event, StepDone):
                post(PruneStep(event.step, event.log.original))
            elif isinstance(event, PruneFinished):
                post(PruneEnded(event.model, event.log))
    except Exception as exc:  # shown on the pruning screen, which stays open
        post(PruneFailed(exc))
    finally:
        lock.release()
