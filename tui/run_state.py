"""What the interface holds of the current run: rows as they arrive, running statistics, steps."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from semiotui.engine.analysis import AnalysisResult, AnalysisSettings, ImageResult
from semiotui.engine.stats import RunningStats
from semiotui.engine.superization import Superization, superization


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
    _steps: Superization | None = None
    _steps_at: int = -1  # images counted when the steps were last computed

    @property
    def running(self) -> bool:
        return not self.finished and self.error is None

    def add(self, images: list[ImageResult], done: int, rate: float) -> None:
        """Take in one batch of rows."""
        for row in images:
            self.rows[row.index] = row
        if images:
            self.stats.update(np.stack([row.entropy for row in images]))
        self.done, self.rate = done, rate

    def finish(self, result: AnalysisResult) -> None:
        """Mark the run ended with the engine's result."""
        self.finished, self.cancelled, self.seconds, self.result = True, result.cancelled, result.seconds, result
        if result.layers:
            self.map_names = list(result.layers)

    def fail(self, message: str) -> None:
        self.error = message

    def snapshot(self, device: str) -> AnalysisResult | None:
        """The engine's result once the run ended; before, the images done so far, marked partial (`cancelled`)."""
        if self.result is not None:
            return self.result
        if not self.rows:
            return None
        rows = [self.rows[i] for i in sorted(self.rows)]
        seconds = self.done / self.rate if self.rate else 0.0
        return AnalysisResult(list(self.map_names), self.settings, device, rows, copy.deepcopy(self.stats),
                              cancelled=True, seconds=seconds)

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
            entropy = np.stack([self.rows[i].entropy for i in sorted(self.rows)])
            self._steps, self._steps_at = superization(entropy, self.map_names), count
        return self._steps
