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
from semiotui.engine.control import ControlFinished, ControlProgress, ControlResult, stream_control
from semiotui.engine.flow import Flow
from semiotui.engine.workspace import Workspace


class AnalysisMessage(Message):
    """Something a run of the analysis reports; `run_id` says which run."""

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id


class AnalysisProgress(AnalysisMessage):
    """A batch of images is done."""

    def __init__(self, run_id: int, images: list[ImageResult], done: int, total: int | None, rate: float,
                 flow: Flow | None = None) -> None:
        super().__init__(run_id)
        self.images = images
        self.done = done
        self.total = total
        self.rate = rate
        self.flow = flow


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


class ControlUpdate(AnalysisMessage):
    """The control after the analysis: `done` of `draws` networks; `finished` with its `result` (None: no control)."""

    def __init__(self, run_id: int, done: int, draws: int, *, finished: bool = False,
                 result: ControlResult | None = None) -> None:
        super().__init__(run_id)  # (not `control`: Textual's messages use that name for the sending widget)
        self.done = done
        self.draws = draws
        self.finished = finished
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


@dataclass(eq=False)  # withdrawn by identity
class _Between:
    """Work for the model, handed to a running job's thread, and how it went."""

    work: Callable[[], None]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass
class AnalysisJob:
    """One run: its id, what it measures, the Event that stops it after the current batch, and one set when it has."""

    run_id: int
    settings: AnalysisSettings
    layers: list[str]
    keep_maps: int
    cancel: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)
    _between: list[_Between] = field(default_factory=list)
    _between_lock: threading.Lock = field(default_factory=threading.Lock)

    def run_between(self, work: Callable[[], None], wanted: Callable[[], bool]) -> bool:
        """Run `work` on the job's thread between two of its batches (it holds the model); wait for it.

        False when the job has stopped and will not run it. Once no longer
        `wanted` (a newer run, the app closing) the work is withdrawn if it has
        not begun, and True returned. Raises what `work` raised.
        """
        item = _Between(work)
        with self._between_lock:
            if self.stopped.is_set():
                return False
            self._between.append(item)
        while not item.done.wait(0.2):
            if not wanted():
                with self._between_lock:
                    if item in self._between:
                        self._between.remove(item)
                        return True
        if item.error is not None:
            raise item.error
        return True

    def _serve_between(self, *, last: bool = False) -> None:
        """Run the work handed over so far; with `last`, mark the job stopped so no more comes."""
        with self._between_lock:
            items, self._between = self._between, []
            if last:
                self.stopped.set()
        for item in items:
            try:
                item.work()
            except Exception as exc:  # the asking thread raises it
                item.error = exc
            finally:
                item.done.set()


def run_job(job: AnalysisJob, workspace: Workspace, post: Callable[[Message], object], lock: threading.Lock) -> None:
    """Stream the job's analysis, posting one message per engine event.

    `lock` keeps two runs off the model at once: the engine's hooks are per
    model, so a new run waits for the cancelled one to finish its batch.
    Between batches the job runs the work others hand it (`run_between`), so
    they need not wait for the whole run.
    """
    with lock:
        if job.cancel.is_set():
            job._serve_between(last=True)
            return
        try:
            result = None
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
                    post(AnalysisProgress(job.run_id, event.images, event.done, event.total, event.rate,
                                          event.flow))
                elif isinstance(event, Notice):
                    post(AnalysisNotice(job.run_id, event.message))
                elif isinstance(event, Finished):
                    result = event.result
                    post(AnalysisFinished(job.run_id, result))
                job._serve_between()  # the engine's hooks are off the model between batches
            if result is not None and result.images and workspace.control is not None and not job.cancel.is_set():
                _run_control(job, workspace, result, post)
        except Exception as exc:  # reported in the interface, which stays open
            post(AnalysisFailed(job.run_id, exc))
        finally:
            job._serve_between(last=True)


def _run_control(job: AnalysisJob, workspace: Workspace, result: AnalysisResult,
                 post: Callable[[Message], object]) -> None:
    """The control networks on the first images, after the analysis, so the first screen is not slower."""
    control = workspace.control
    count = min(control.images, len(result.images))
    images = workspace.images.subset([row.index for row in result.images[:count]])
    post(ControlUpdate(job.run_id, 0, control.draws))
    for event in stream_control(workspace.model, images.batches(job.settings.batch_size), result, control,
                                cancel=job.cancel):
        if isinstance(event, ControlProgress):
            post(ControlUpdate(job.run_id, event.done, event.draws))
        elif isinstance(event, Notice):
            post(AnalysisNotice(job.run_id, event.message))
        elif isinstance(event, ControlFinished):
            done = 0 if event.control is None else len(event.control.seeds)
            post(ControlUpdate(job.run_id, done, control.draws, finished=True, result=event.control))
        job._serve_between()  # maps on demand between two control networks


def compute_maps(
    run_id: int,
    result: AnalysisResult,
    layers: list[str],
    workspace: Workspace,
    post: Callable[[Message], object],
    lock: threading.Lock,
    wanted: Callable[[], bool],
    job: AnalysisJob | None = None,
) -> None:
    """Thumbnails for the rows of `result` (maps the run did not keep), from one more small pass on the model.

    While `job` runs, the pass runs on its thread between two batches; else it
    waits for `lock`. A request no longer `wanted` by then (the user moved on)
    is dropped.
    """
    images = [row.index for row in result.images]

    def make() -> None:
        if wanted():
            add_maps(workspace.model, workspace.images, layers, result, range(len(images)))

    try:
        if job is None or not job.run_between(make, wanted):
            while not lock.acquire(timeout=0.2):
                if not wanted():
                    post(MapsReady(run_id, images))
                    return
            try:
                make()
            finally:
                lock.release()
    except Exception as exc:  # shown in the interface, which stays open
        post(MapsReady(run_id, images, exc))
        return
    post(MapsReady(run_id, images))
