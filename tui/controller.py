"""The run controller: the interface's jobs on the session, the run state, and engine events as messages.

Not a widget: the screens are views of what it holds. It is the one bridge from the engine to the interface:
the session calls a job's `post` in its own thread; the controller hands the event to the interface's thread
(`schedule`), updates the run state there, and posts one of the messages of `messages.py` to the screen that
asked for the job (the explorer, for its analysis and maps).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from textual.message import Message
from torch import nn

from semiotui.engine import (AnalysisResult, AnalysisSettings, BatchDone, ControlFinished, ControlProgress, Finished,
                             Notice, PruneFinished, PruneLog, PruneSettings, StepDone, Trying, Working, index_layers)
from semiotui.engine.device import resolve_device
from semiotui.engine.explain import label_order_warning, showcase
from semiotui.engine.pruning import conv_layers, prune_splits
from semiotui.engine.reports import DEFAULT_MAPS
from semiotui.engine.session import Job, JobEnded, JobFailed, MapsAdded, Post, Preparing, Session
from semiotui.engine.workspace import ModelInfo

from .errors import for_interface
from .export import OnProgress, ReportInput, ReportSource
from .messages import (JobNotice, MapsDrawn, ModelAnalysed, PruneEnded, PruneFailed, PrunePhase, PruneStep,
                       PruneWaiting, RunChanged)
from .run_state import RunState

Receive = Callable[[Job, object], None]
PostMessage = Callable[[Message], object]


class RunController:
    """The session's jobs for the interface: the explorer's analysis and its maps, pruning, the pruned model's
    analysis, and what reports need; with the current run's state and settings."""

    def __init__(self, session: Session, schedule: Callable[..., object], *, keep_maps: int,
                 tracebacks: bool = False) -> None:
        """`schedule(callback, *args)` calls back in the interface's thread, from any thread (`App.call_later`);
        `keep_maps`: images whose maps the analysis keeps (others' are computed when shown); `tracebacks`
        (`--debug`): a bug's message comes with its traceback."""
        workspace = session.workspace
        self.session = session  # the one owner of the model: every job on it goes through it
        self.workspace = workspace
        self.settings = workspace.settings
        self.measured = list(workspace.layers)
        self.keep_maps = max(1, min(keep_maps, len(workspace.images)))
        self.tracebacks = tracebacks
        self.device = resolve_device(self.settings.device)
        self.run_state: RunState | None = None
        self.job: Job | None = None  # the latest analysis (running or not)
        self._schedule = schedule
        self._post: PostMessage = lambda message: None  # where the analysis' messages go (`listen`)
        self._mapping: dict[Job, set[int]] = {}  # maps jobs not ended, with the images they draw

    @property
    def has_model(self) -> bool:
        """A model is loaded: analyses and maps can be computed (not a saved report)."""
        return self.session.live

    def describe(self, error: BaseException) -> str:
        """An error as the interface shows it: one line, with the traceback of a bug under `--debug`."""
        return for_interface(error, self.tracebacks)

    def listen(self, post: PostMessage) -> None:
        """Send the analysis' and the maps' messages to `post` (the explorer's)."""
        self._post = post

    def _bridge(self, receive: Receive) -> Post:
        """A job's `post` for the session: each event goes to `receive` in the interface's thread."""
        return lambda job, event: self._schedule(receive, job, event)

    # The explorer's analysis: one job at a time, restarted when what it measures changes.

    def restart_analysis(self, settings: AnalysisSettings | None = None, measured: list[str] | None = None) -> None:
        """Drop the running analysis (at its current batch) and start one with these settings and layers (the
        current ones where not given)."""
        self.settings = settings or self.settings
        self.measured = measured or self.measured
        self.stop_analysis()
        layers = list(self.measured)
        self.job = self.session.analyse(self._bridge(self._analysis_event), self.settings, layers,
                                        keep_maps=self.keep_maps)
        map_names = self.workspace.index.map_names(layers)
        self.run_state = RunState(self.job.number, self.settings, layers, map_names, total=len(self.workspace.images))
        if self.workspace.control is None:
            self.run_state.control_state = "none"

    def stop_analysis(self) -> None:
        """Drop the latest analysis at its current batch."""
        if self.job is not None:
            self.job.abort()

    def _analysis_event(self, job: Job, event: object) -> None:
        run = self.run_state
        if job is not self.job or run is None:
            return  # an earlier run's
        if isinstance(event, BatchDone):
            run.add(event.images, event.done, event.rate, event.flow, event.classes, event.scores, event.total)
            self._post(RunChanged())
        elif isinstance(event, Notice):
            self._post(JobNotice(event.message))
        elif isinstance(event, Finished):
            run.finish(event.result)
            self._post(RunChanged(now=True))
            images = self.workspace.images
            order = label_order_warning(event.result, getattr(images, "label_source", None), images.class_names)
            if order:
                self._post(JobNotice(order, timeout=15))
        elif isinstance(event, (ControlProgress, ControlFinished)):
            finished = isinstance(event, ControlFinished)
            done = event.done if not finished else (0 if event.control is None else len(event.control.seeds))
            run.control_progress(done, finished=finished, control=event.control if finished else None)
            self._post(RunChanged(now=finished))  # finished: the verdicts changed
        elif isinstance(event, JobFailed):
            run.fail(for_interface(event.error))
            self._post(JobNotice(f"analysis failed: {self.describe(event.error)}", "error", 10))
            self._post(RunChanged(now=True))

    def stopping_note(self) -> str:
        """What the session's jobs are, said while quitting waits for them to stop at their current batch."""
        if self.session.scheduler.jobs("prune"):
            return "semiotui: stopping the pruning after its current batch…"
        run = self.run_state
        if run is not None and run.control_state == "running" and not run.running:
            draws = self.workspace.control.draws
            return (f"semiotui: stopping the control (network {min(run.control_done + 1, draws)} of {draws}) "
                    "after its current batch…")
        return "semiotui: stopping the analysis after its current batch…"

    # Maps the analysis did not keep.

    def request_maps(self, images: list[int]) -> None:
        """Compute the maps the analysis did not keep for these images, between two of its batches."""
        run = self.run_state
        if run is None or not self.has_model:
            return
        drawing = set().union(*self._mapping.values())
        rows = [run.rows[i] for i in images if i in run.rows and run.rows[i].maps is None and i not in drawing]
        if rows:
            result = AnalysisResult(run.map_names, run.settings, "", rows)  # the rows themselves get the maps
            job = self.session.add_maps(self._bridge(self._maps_event), result, list(range(len(rows))),
                                        list(run.layers))
            self._mapping[job] = {row.index for row in rows}

    def keep_maps_of(self, image: int) -> None:
        """Drop the maps jobs of images other than `image`, unless under way."""
        for job, images in self._mapping.items():
            if image not in images:
                job.abort()

    def _maps_event(self, job: Job, event: object) -> None:
        if isinstance(event, JobFailed):
            self._post(JobNotice(f"could not compute the map: {self.describe(event.error)}", "error", 8))
        elif isinstance(event, MapsAdded):
            self._post(MapsDrawn())
        elif isinstance(event, JobEnded):
            self._mapping.pop(job, None)

    # Greedy pruning of a copy of the model, and the pruned model's analysis.

    def start_prune(self, settings: PruneSettings, analysis: AnalysisSettings, post: PostMessage) -> Job:
        """Queue greedy pruning of a copy of the model; its events come to `post` as the Prune messages.

        The job waits for the explorer's analysis to end (the session runs them in turn): `PruneWaiting` says so.
        """
        workspace = self.workspace
        ended = False

        def receive(job: Job, event: object) -> None:
            nonlocal ended
            if isinstance(event, (Preparing, Working, Trying)):
                post(PrunePhase(event.text))
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

        waiting = bool(self.session.scheduler.jobs())
        job = self.session.prune(self._bridge(receive), lambda: (*prune_splits(workspace), conv_layers(workspace)),
                                 settings, analysis)
        if waiting:
            post(PruneWaiting())
        return job

    def analysed_so_far(self) -> AnalysisResult | None:
        """The explorer's result: the engine's once the run ended, before, the images done so far."""
        return None if self.run_state is None else self.run_state.snapshot(str(self.device))

    def analyse_model(self, model: nn.Module, original: AnalysisResult, post: PostMessage) -> Job:
        """Analyse `model` as the explorer analysed `original`; `ModelAnalysed` comes to `post`."""

        def receive(job: Job, event: object) -> None:
            if isinstance(event, JobFailed):
                post(ModelAnalysed(job, None, event.error))
            elif isinstance(event, Finished):
                post(ModelAnalysed(job, event.result))

        layers = list(self.run_state.layers)
        return self.session.analyse_model(self._bridge(receive), model, original.settings, layers,
                                          keep_maps=self.keep_maps)

    # What reports are written from; run in the export dialog's worker, which waits for the session's jobs.

    def report_of_run(self, result: AnalysisResult) -> ReportSource:
        """The explorer's result with maps for the first images and the contrast pair, like `semiotui report`.

        The contrast pair's maps are drawn by the session between two batches when the analysis still runs.
        """
        session, layers = self.session, list(self.run_state.layers)

        def prepare(progress: OnProgress, cancel: threading.Event) -> ReportInput:
            shown = set(showcase(result, DEFAULT_MAPS))
            rows = [row if k in shown else replace(row, maps=None) for k, row in enumerate(result.images)]
            chosen = replace(result, images=rows)
            if self.has_model:
                progress("drawing the maps of images across the classes, a mistake and a correct image", None, None)
                missing = [k for k in sorted(shown) if rows[k].maps is None]
                if missing:
                    session.add_maps(_ignore, chosen, missing, layers, cancel=cancel).ended.wait()
                session.add_contrast_maps(_ignore, chosen, layers, cancel=cancel).ended.wait()
            return ReportInput(session.workspace, chosen)

        return prepare

    def report_of_model(self, model: nn.Module, layers: list[str], settings: AnalysisSettings, *,
                        path: str | None = None, pruning: PruneLog | None = None) -> ReportSource:
        """A fresh analysis of `model` (the pruned one, saved at `path` if it was) on the workspace's images.

        With its `pruning` log, the report shows the steps and the curves before and after.
        """
        session, workspace = self.session, self.workspace

        def prepare(progress: OnProgress, cancel: threading.Event) -> ReportInput:
            images, total = workspace.images, len(workspace.images)
            ended: dict[str, AnalysisResult] = {}

            def post(job: Job, event: object) -> None:
                if isinstance(event, BatchDone):
                    progress("analysing the model", event.done, total)
                elif isinstance(event, Finished):
                    ended["result"] = event.result

            progress("analysing the model", 0, total)
            job = session.analyse_model(post, model, settings, layers, keep_maps=DEFAULT_MAPS, cancel=cancel)
            job.ended.wait()  # every job ends, also when it or `post` fails (engine.session)
            if job.error is not None:
                raise job.error
            device = next(model.parameters()).device
            index = index_layers(model, images.example().to(device))
            info = ModelInfo(path, "pruned", workspace.info.arch, sum(p.numel() for p in model.parameters()))
            pruned = replace(workspace, model=model, info=info, index=index, layers=layers, settings=settings,
                             warnings=[])
            return ReportInput(pruned, ended["result"], pruning)

        return prepare


def _ignore(job: Job, event: object) -> None:
    """A job's events that nobody shows."""

