"""The one owner of a loaded model: every job on it runs here, in one thread, one step at a time.

A job is a generator of events (the engine's streams are): the session advances
one job by one step (a batch, a control network, a pruning move), hands the
event to `post`, and picks the next job. An urgent job (maps for the image on
screen) runs to its end between two steps of a long one (an analysis), so the
user does not wait for the whole run; otherwise jobs run in the order they came.
The model's hooks live inside a step, so nothing else touches the model while
a step runs, and no lock is passed around.

Cancelling is the job's own business: its generator watches `job.cancel` (the
engine's streams take that Event) and ends as it sees fit, keeping what it
finished. `abort` drops a job at its next step, running its `finally` blocks.

A failure, in a step or in a `post` callback, ends that job with the error
(`JobFailed`, and `job.error` where even that cannot be posted) and the session
goes on with the next job: every job ends, so nothing waits on `ended` forever.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from torch import nn

from .analysis import AnalysisResult, AnalysisSettings, BatchDone, Finished, add_maps, stream_analysis
from .control import ControlFinished, stream_control
from .errors import one_line
from .greedy import PruneSettings, greedy_prune
from .pruning import held_out_note
from .explain import add_contrast_maps
from .workspace import ImageSet, Workspace


@dataclass
class JobFailed:
    """The job stopped on an error (its last event)."""

    error: BaseException


@dataclass
class JobEnded:
    """The job ran to its end, finished, was cancelled or dropped (always its last event)."""

    aborted: bool = False


@dataclass(eq=False)
class Job:
    """Work for the model: `steps(job)` makes the generator of its events, which go to `post(job, event)`."""

    kind: str
    steps: Callable[["Job"], Iterator[object]]
    post: Callable[["Job", object], object]
    urgent: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)  # the generator ends early, keeping its work
    ended: threading.Event = field(default_factory=threading.Event)  # set once JobEnded was posted
    error: BaseException | None = None  # what it failed on, kept even where `post` could not tell it
    number: int = 0  # in submission order, set by the session
    _aborted: threading.Event = field(default_factory=threading.Event)

    def abort(self) -> None:
        """Drop the job at its next step (or before it starts)."""
        self.cancel.set()
        self._aborted.set()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()


Post = Callable[[Job, object], object]


class Scheduler:
    """Runs jobs one step at a time in its own thread; each job's events go to its `post`, called in that thread."""

    def __init__(self) -> None:
        self._jobs: list[Job] = []
        self._running: dict[Job, Iterator[object]] = {}
        self._changed = threading.Condition()
        self._closed = False
        self._numbers = itertools.count(1)
        self._thread: threading.Thread | None = None

    def submit(self, kind: str, steps: Callable[[Job], Iterator[object]], post: Post, *, urgent: bool = False,
               cancel: threading.Event | None = None) -> Job:
        """Queue a job; its events go to `post`, the last being `JobEnded` (after `JobFailed` on an error).

        `cancel`: an Event of the caller's that cancels the job (a new one otherwise).
        """
        job = Job(kind, steps, post, urgent=urgent)
        if cancel is not None:
            job.cancel = cancel
        with self._changed:
            if self._closed:
                raise RuntimeError("the session is closed")
            job.number = next(self._numbers)
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="semiotui-session", daemon=True)
                self._thread.start()
            self._changed.notify()
        return job

    def jobs(self, kind: str | None = None) -> list[Job]:
        """The jobs not ended yet (of `kind`), in submission order."""
        with self._changed:
            return [job for job in self._jobs if kind is None or job.kind == kind]

    def close(self, timeout: float | None = None) -> bool:
        """Abort every job and stop the thread; True once it has stopped (within `timeout`)."""
        with self._changed:
            self._closed = True
            for job in self._jobs:
                job.abort()
            self._changed.notify()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _next(self) -> Job | None:
        """The job to advance: the first urgent one, else the first; None once closed and empty."""
        with self._changed:
            while not self._jobs and not self._closed:
                self._changed.wait()
            if not self._jobs:
                return None
            return next((job for job in self._jobs if job.urgent), self._jobs[0])

    def _run(self) -> None:
        try:
            while (job := self._next()) is not None:
                self._advance(job)
        except BaseException as exc:  # a bug here: end every job left, so no one waits on them forever
            self._stopped(exc)
            raise

    def _advance(self, job: Job) -> None:
        """One step of `job`, its event posted; any failure, its own or its `post`'s, ends it with the error."""
        if job.aborted:
            self._end(job, aborted=True)
            return
        try:
            steps = self._running.get(job)
            if steps is None:
                steps = self._running[job] = job.steps(job)
            event = next(steps)
        except StopIteration:
            self._end(job)
            return
        except BaseException as exc:  # also SystemExit from a model's code: the session outlives every job
            self._fail(job, exc)
            return
        if not self._post(job, event):
            self._fail(job, job.error)

    def _post(self, job: Job, event: object) -> bool:
        """Hand `event` to the job's callback; False (the error kept in `job.error`) when the callback raised."""
        try:
            job.post(job, event)
        except BaseException as exc:
            job.error = job.error or exc
            return False
        return True

    def _fail(self, job: Job, error: BaseException) -> None:
        job.error = error
        self._post(job, JobFailed(error))
        self._end(job)

    def _end(self, job: Job, *, aborted: bool = False) -> None:
        try:
            steps = self._running.pop(job, None)
            if steps is not None and hasattr(steps, "close"):
                try:
                    steps.close()  # runs the generator's `finally` blocks (hooks removed, copies freed)
                except BaseException as exc:
                    job.error = job.error or exc
                    self._post(job, JobFailed(exc))
            with self._changed:
                if job in self._jobs:
                    self._jobs.remove(job)
            self._post(job, JobEnded(aborted))
        finally:
            job.ended.set()

    def _stopped(self, exc: BaseException) -> None:
        """The thread stops on `exc`: every job left fails with it; the next `submit` starts a new thread."""
        error = RuntimeError(f"the session stopped on an internal error ({one_line(exc, short=True)})")
        with self._changed:  # taken out at once: a new thread may already serve the jobs submitted from now on
            left, self._jobs, self._thread = self._jobs, [], None
        for job in left:
            self._fail(job, error)


@dataclass
class MapsAdded:
    """Thumbnails are now in the rows of the result at `positions`."""

    positions: list[int]


class NeedsModel(Exception):
    """The job needs the model, and this session has none (a saved report)."""


class Session:
    """A loaded model with its workspace, and the jobs that run on it (`Scheduler`): the one way in, for the
    interface as for the command line.

    Every method queues a job and returns it; its events go to `post(job, event)` (or, for a caller that waits,
    come through `job_events`). Closed on leaving a `with` block.
    """

    live = True  # a model is here: maps and analyses can be computed

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.scheduler = Scheduler()

    def close(self, timeout: float | None = None) -> bool:
        return self.scheduler.close(timeout)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        self.close(None if kind is None else 0)  # after an error (a second Ctrl-C) a step may still run: no wait

    def analyse(self, post: Post, settings: AnalysisSettings, layers: list[str], *, keep_maps: int,
                images: ImageSet | None = None, first_index: int = 0, control: bool = True,
                cancel: threading.Event | None = None) -> Job:
        """The analysis of every image, then the control (when the workspace asks for one) on a sample of them.

        `images`: a part of the workspace's (a shard's, numbered from `first_index`); `control` False leaves the
        control to a job of its own (`control`).
        """
        ws = self.workspace
        images = ws.images if images is None else images

        def steps(job: Job) -> Iterator[object]:
            result = None
            for event in stream_analysis(ws.model, images.batches(settings.batch_size), layers, settings,
                                         keep_maps=keep_maps, total=len(images), cancel=job.cancel,
                                         first_index=first_index):
                if isinstance(event, Finished):
                    result = event.result
                yield event
            wanted = control and ws.control is not None
            if wanted and result is not None and result.images and not job.cancel.is_set():
                yield from control_steps(ws, result, job.cancel)

        return self.scheduler.submit("analysis", steps, post, cancel=cancel)

    def control(self, post: Post, result: AnalysisResult, *, cancel: threading.Event | None = None) -> Job:
        """The control networks on a sample of the images of `result` (the workspace's control settings), attached
        to it when done; ends with `ControlFinished`."""

        def steps(job: Job) -> Iterator[object]:
            yield from control_steps(self.workspace, result, job.cancel)

        return self.scheduler.submit("control", steps, post, cancel=cancel)

    def add_maps(self, post: Post, result: AnalysisResult, positions: list[int], layers: list[str], *,
                 cancel: threading.Event | None = None) -> Job:
        """Thumbnails for the rows of `result` at `positions` that have none; urgent: between two steps of a run."""

        def steps(job: Job) -> Iterator[object]:
            add_maps(self.workspace.model, self.workspace.images, layers, result, positions)
            yield MapsAdded(list(positions))

        return self.scheduler.submit("maps", steps, post, urgent=True, cancel=cancel)

    def add_contrast_maps(self, post: Post, result: AnalysisResult, layers: list[str], *,
                          cancel: threading.Event | None = None) -> Job:
        """The maps of the contrast pair (a mistake beside a correct image of its class), for a report; urgent."""

        def steps(job: Job) -> Iterator[object]:
            pair = add_contrast_maps(self.workspace.model, self.workspace.images, layers, result)
            yield MapsAdded([] if pair is None else list(pair))  # none: the result has no contrast pair

        return self.scheduler.submit("maps", steps, post, urgent=True, cancel=cancel)

    def analyse_model(self, post: Post, model: nn.Module, settings: AnalysisSettings, layers: list[str], *,
                      keep_maps: int, cancel: threading.Event | None = None) -> Job:
        """Another model (a pruned copy) on the workspace's images, with its contrast pair's maps."""
        images = self.workspace.images

        def steps(job: Job) -> Iterator[object]:
            for event in stream_analysis(model, images.batches(settings.batch_size), layers, settings,
                                         keep_maps=keep_maps, total=len(images), cancel=job.cancel):
                if isinstance(event, Finished) and not event.result.cancelled:
                    add_contrast_maps(model, images, layers, event.result)
                yield event

        return self.scheduler.submit("analysis", steps, post, cancel=cancel)

    def prune(self, post: Post, prepare: Callable[[], tuple[object, object, list[str]]], settings: PruneSettings,
              analysis: AnalysisSettings, *, cancel: threading.Event | None = None) -> Job:
        """Greedy pruning of a copy of the model; `prepare()` gives (training images, held-out images, layers).

        `job.cancel` (`cancel`, where given) keeps the best model so far; `abort` drops the step under way.
        """

        def steps(job: Job) -> Iterator[object]:
            yield Preparing("preparing the images")
            train, held_out, layers = prepare()
            yield Preparing(f"measuring the original model on {held_out_note(self.workspace, held_out)}")
            yield from greedy_prune(self.workspace.model, train, held_out, layers, settings, analysis,
                                    cancel=job.cancel)

        return self.scheduler.submit("prune", steps, post, cancel=cancel)


@dataclass
class Preparing:
    """What a job is doing before its first real step."""

    text: str


class SavedSession(Session):
    """A saved report's workspace: its finished analysis is replayed, and what needs the model says so."""

    live = False

    def analyse(self, post: Post, settings: AnalysisSettings, layers: list[str], **options: object) -> Job:
        """The saved result, as one batch and its end (the options of a live analysis do not apply)."""
        result = self.workspace.result

        def steps(job: Job) -> Iterator[object]:
            yield BatchDone(result.images, len(result.images), len(result.images), 0.0, result.flow, result.classes,
                            result.scores)
            yield Finished(result)

        return self.scheduler.submit("analysis", steps, post)

    def add_maps(self, post: Post, result: AnalysisResult, positions: list[int], layers: list[str], *,
                 cancel: threading.Event | None = None) -> Job:
        raise NeedsModel("maps the report did not keep need the model: open it with semiotui MODEL")

    add_contrast_maps = add_maps

    def analyse_model(self, *args: object, **kwargs: object) -> Job:
        raise NeedsModel("analysing needs the model: open it with semiotui MODEL")

    def control(self, *args: object, **kwargs: object) -> Job:
        raise NeedsModel("the control needs the model: open it with semiotui MODEL")

    def prune(self, *args: object, **kwargs: object) -> Job:
        raise NeedsModel("pruning needs the model, and this is a saved report: open the model with semiotui MODEL")


def open_session(workspace: Workspace) -> Session:
    """The session of a workspace: a live one with its model, a saved one without."""
    return Session(workspace) if workspace.model is not None else SavedSession(workspace)


def control_steps(workspace: Workspace, result: AnalysisResult, cancel: threading.Event) -> Iterator[object]:
    """The control networks on a sample of the images of `result`; attaches the control to it when done."""
    control = workspace.control
    yield Preparing(f"control: {control.draws} copies of the model with shuffled weights on "
                    f"{control.sample_size(len(result.images))} images spread across the classes, one more pass each")
    for event in stream_control(workspace.model, workspace.images, result, control, cancel=cancel):
        if isinstance(event, ControlFinished):
            result.control, result.no_control = event.control, event.reason
        yield event


def job_events(submit: Callable[..., Job], *args: object, **options: object) -> Iterator[object]:
    """The events of the job `submit(post, *args, **options)` queues (a `Session` method), received in the
    caller's thread, up to its end.

    How a front end that waits for a job (the command line) follows it: the session posts in its own thread,
    while progress bars and signals belong to the caller's. A failure is raised once the job has ended (its
    hooks removed); leaving early (a second Ctrl-C) drops the job.
    """
    events: queue.SimpleQueue = queue.SimpleQueue()
    job = submit(lambda job, event: events.put(event), *args, **options)
    error, ended = None, False
    try:
        while not (ended := isinstance(event := events.get(), JobEnded)):
            if isinstance(event, JobFailed):
                error = error or event.error
            else:
                yield event
    finally:
        if not ended:  # left early: drop the job (an ended one is left alone: its `cancel` may be the caller's)
            job.abort()
    if error is not None:
        raise error
