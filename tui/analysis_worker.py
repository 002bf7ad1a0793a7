"""The analysis as the interface runs it: one job per run, in a worker thread, talking in messages.

The thread never touches a widget: every engine event becomes a message tagged
with the job's run id, so the app can drop whatever a cancelled run still sends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from textual.message import Message

from semiotui.engine.analysis import (
    AnalysisResult,
    AnalysisSettings,
    BatchDone,
    Finished,
    ImageResult,
    Notice,
    add_maps,
    stream_analysis,
)
from semiotui.engine.workspace import Workspace


class AnalysisMessage(Message):
    """Something a run of the analysis reports; `run_id` says which run."""

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id


class AnalysisProgress(AnalysisMessage):
    """A batch of images is done."""

    def __init__(self, run_id: int, images: list[ImageResult], done: int, total: int | None, rate: float) -> None:
        super().__init__(run_id)
        self.images = images
        self.done = done
        self.total = total
        self.rate = rate


class AnalysisNotice(AnalysisMessage):
    """The engine says something the user should know (e.g. it halved the batch)."""

    def __init__(self, run_id: int, text: str) -> None:
        super().__init__(run_id)
        self.text = text


class AnalysisFinished(AnalysisMessage):
    """The run ended, completed or cancelled; `result` holds what it finished."""

    def __init__(self, run_id: int, result: AnalysisResult) -> None:
        super().__init__(run_id)
        self.result = result


class AnalysisFailed(AnalysisMessage):
    """The run stopped on an error."""

    def __init__(self, run_id: int, error: BaseException) -> None:
        super().__init__(run_id)
        self.error = error


class MapsReady(AnalysisMessage):
    """Maps the run had not kept are now in the rows of `images` (unless the request was dropped, or `error`)."""

    def __init__(self, run_id: int, images: list[int], error: BaseException | None = None) -> None:
        super().__init__(run_id)
        self.images = images
        self.error = error


@dataclass
class AnalysisJob:
    """One run: its id, what it measures, the Event that stops it after the current batch, and one set when it has."""

    run_id: int
    settings: AnalysisSettings
    layers: list[str]
    keep_maps: int
    cancel: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)


def run_job(job: AnalysisJob, workspace: Workspace, post: Callable[[Message], object], lock: threading.Lock) -> None:
    """Stream the job's analysis, posting one message per engine event.

    `lock` keeps two runs off the model at once: the engine's hooks are per
    model, so a new run waits for the cancelled one to finish its batch.
    """
    with lock:
        if job.cancel.is_set():
            job.stopped.set()
            return
        try:
            events = stream_analysis(
                workspace.model,
                workspace.images.batches(job.settings.batch_size),
                job.layers,
                job.settings,
                keep_maps=job.keep_maps,
                total=len(workspace.images),
                cancel=job.cancel,
            )
            for event in events:
                if isinstance(event, BatchDone):
                    post(AnalysisProgress(job.run_id, event.images, event.done, event.total, event.rate))
                elif isinstance(event, Notice):
                    post(AnalysisNotice(job.run_id, event.message))
                elif isinstance(event, Finished):
                    post(AnalysisFinished(job.run_id, event.result))
        except Exception as exc:  # reported in the interface, which stays open
            post(AnalysisFailed(job.run_id, exc))
        finally:
            job.stopped.set()


def compute_maps(
    run_id: int,
    result: AnalysisResult,
    layers: list[str],
    workspace: Workspace,
    post: Callable[[Message], object],
    lock: threading.Lock,
    wanted: Callable[[], bool],
) -> None:
    """Thumbnails for the rows of `result` (maps the run did not keep), from one more small pass on the model.

    The pass waits for `lock` (a running analysis holds it to the end); a request
    no longer `wanted` by then (the user moved on) is dropped.
    """
    images = [row.index for row in result.images]
    while not lock.acquire(timeout=0.2):
        if not wanted():
            post(MapsReady(run_id, images))
            return
    try:
        if wanted():
            add_maps(workspace.model, workspace.images, layers, result, range(len(images)))
    except Exception as exc:  # shown in the interface, which stays open
        post(MapsReady(run_id, images, exc))
        return
    finally:
        lock.release()
    post(MapsReady(run_id, images))
