"""What the interface holds of the current run: rows as they arrive, running statistics, steps."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from semiotui.engine import (AnalysisResult, AnalysisSettings, ControlResult, Flow, ImageResult, RunningStats,
                             Superization)


@dataclass
class RunState:
    """One run's results so far; a new run starts from a new, empty state."""

    run_id: int
    settings: AnalysisSettings
    layers: list[str]  # measured module names, forward order
    map_names: list[str]  # their maps, the columns of each row's entropy
    total: int | None
    rows: dict[int, ImageResult] = field(default_factory=dict)  # by image index
    stats: RunningStats = field(default_factory=RunningStats)
    done: int = 0
    rate: float = 0.0
    finished: bool = False
    cancelled: bool = False
    error: str | None = None
    seconds: float = 0.0
    result: AnalysisResult | None = None  # the engine's own, once the run ended (for export)
    flow: Flow | None = None  # which measured layer feeds which, from the first batch
    control: ControlResult | None = None  # the control networks' entropies, once they are done
    control_done: int = 0  # control networks analysed so far
    control_state: str = "waiting"  # waiting (for the analysis), running, done, none (not asked for or failed)
    empties: np.ndarray | None = None  # per map: images so far whose map is empty
    classes: int = 0  # the model's number of classes
    scores: str = "logits"  # what its output holds
    labelled: int = 0  # images so far with a label, and of those the ones predicted right (top-1, top-5)
    right: int = 0
    right5: int = 0
    _steps: Superization | None = None
    _steps_at: int = -1  # images counted when the steps were last computed

    @property
    def running(self) -> bool:
        return not self.finished and self.error is None

    def add(self, images: list[ImageResult], done: int, rate: float, flow: Flow | None = None, classes: int = 0,
            scores: str = "logits", total: int | None = None) -> None:
        """Take in one batch of rows (and what the run says of the model: its flow, classes and scores, and
        the images it covers, fewer once files are found unreadable)."""
        self.classes, self.scores = classes or self.classes, scores
        self.total = total if total is not None else self.total
        for row in images:
            self.rows[row.index] = row
            if row.label is not None:
                self.labelled += 1
                self.right += row.predicted == row.label
                self.right5 += row.label in row.top[:5]
        if images:
            self.stats.update(np.stack([row.entropy for row in images]))
            if all(row.empty is not None for row in images):
                counted = np.stack([row.empty for row in images]).sum(axis=0)
                self.empties = counted if self.empties is None else self.empties + counted
        self.done, self.rate = done, rate
        self.flow = flow or self.flow

    def control_progress(self, done: int, *, finished: bool = False, control: ControlResult | None = None) -> None:
        """Take in the control's progress; its result changes the verdicts, so the steps are computed again."""
        self.control_done = done
        self.control_state = "running" if not finished else ("done" if control is not None else "none")
        if finished:
            self.control = control
            if self.result is not None:
                self.result.control = control
            self._steps_at = -1

    def finish(self, result: AnalysisResult) -> None:
        """Mark the run ended with the engine's result."""
        self.finished, self.cancelled, self.seconds, self.result = True, result.cancelled, result.seconds, result
        if result.layers:
            self.map_names = list(result.layers)
        self.flow = result.flow or self.flow
        if result.control is not None:
            self.control, self.control_state = result.control, "done"
        elif self.control_state == "waiting":  # the session starts the control now, on the images it analysed
            self.control_state = "running" if result.images and not result.cancelled else "none"

    def fail(self, message: str) -> None:
        self.error = message

    def snapshot(self, device: str = "") -> AnalysisResult | None:
        """The engine's result once the run ended; before, the images done so far (`partial`: still running)."""
        if self.result is not None:
            return self.result
        if not self.rows:
            return None
        rows = [self.rows[i] for i in sorted(self.rows)]
        seconds = self.done / self.rate if self.rate else 0.0
        return AnalysisResult(list(self.map_names), self.settings, device, rows, copy.deepcopy(self.stats),
                              seconds=seconds, flow=self.flow, scores=self.scores, classes=self.classes,
                              control=self.control, total=self.total)

    def mean_entropy(self, map_name: str) -> float | None:
        """The mean entropy of a map over the images so far, or None if not measured yet."""
        if self.stats.count == 0 or map_name not in self.map_names:
            return None
        return float(self.stats.mean[self.map_names.index(map_name)])

    def steps(self, *, every: float = 0.25) -> Superization | None:
        """Curve and superization steps, recomputed when the image count grew by `every` or the run ended."""
        count = self.stats.count
        if count == 0:
            return None
        stale = count != self._steps_at and (self.finished or count >= self._steps_at * (1 + every))
        if self._steps is None or stale:
            self._steps = self.snapshot().superization()  # the engine's one computation of the steps
            self._steps_at = count
        return self._steps

    def accuracy_text(self, *, top5: bool) -> str:
        """Accuracy over the labelled images so far, as the status line shows it ("" without labels)."""
        if not self.labelled:
            return ""
        text = f"acc {self.right / self.labelled:.1%}"
        if top5:
            text += f" · top-5 {self.right5 / self.labelled:.1%}"
        return text

    def empty_share(self, map_name: str) -> float | None:
        """The share of this map's images so far whose map is empty, or None if not measured yet."""
        if self.empties is None or map_name not in self.map_names:
            return None
        return float(self.empties[self.map_names.index(map_name)]) / self.stats.count
