"""Greedy pruning as the interface runs it: a job of the session, whose events come back as messages."""

from __future__ import annotations

from collections.abc import Callable

from textual.message import Message
from torch import nn

from semiotui.engine.analysis import AnalysisSettings
from semiotui.engine.greedy import Measure, PruneFinished, PruneLog, PruneSettings, Step, StepDone, Trying, Working
from semiotui.engine.session import Job, JobEnded, JobFailed, Preparing, Session
from semiotui.engine.pruning import conv_layers, prune_splits



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


def start_prune(session: Session, settings: PruneSettings, analysis: AnalysisSettings,
                post: Callable[[Message], object]) -> Job:
    """Queue greedy pruning of a copy of the session's model; its events come back as the messages above.

    The job waits for the explorer's analysis to end (the session runs them in turn): `PruneWaiting` says so.
    """
    workspace = session.workspace
    layer, ended = "", False

    def translate(job: Job, event: object) -> None:
        nonlocal layer, ended
        if isinstance(event, Preparing):
            post(PrunePhase(event.text))
        elif isinstance(event, Trying):
            layer = event.layer
            post(PruneTrying(event.layer, event.step))
        elif isinstance(event, Working):
            post(PrunePhase(f"step {event.step}: {layer}, {event.what}"))
        elif isinstance(event, StepDone):
            post(PruneStep(event.step, event.log.original))
        elif isinstance(event, PruneFinished):
            ended = True
            post(PruneEnded(event.model, event.log))
        elif isinstance(event, JobFailed):
            ended = True
            post(PruneFailed(event.error))
        elif isinstance(event, JobEnded) and not ended:
            post(PruneEnded(None, None))  # stopped before anything was measured

    waiting = bool(session.scheduler.jobs())
    job = session.prune(translate, lambda: (*prune_splits(workspace), conv_layers(workspace)), settings, analysis)
    if waiting:
        post(PruneWaiting())
    return job
