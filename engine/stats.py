"""Running mean and 95% confidence interval that merge across batches and shards."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RunningStats:
    """Per-column count, mean and sum of squared deviations (Welford/Chan).

    Memory is one row whatever the number of samples; `merge` combines two
    shards into the statistics of their union.
    """

    count: int = 0
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    m2: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def of(cls, values: np.ndarray) -> RunningStats:
        """Statistics of the rows of `values` (samples × columns)."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2:
            raise ValueError(f"values must be 2-D (samples, columns), got shape {v.shape}")
        if v.shape[0] == 0:
            return cls(0, np.zeros(v.shape[1]), np.zeros(v.shape[1]))
        mean = v.mean(axis=0)
        return cls(v.shape[0], mean, ((v - mean) ** 2).sum(axis=0))

    def update(self, values: np.ndarray) -> None:
        """Add the rows of `values`."""
        self.merge(RunningStats.of(values))

    def merge(self, other: RunningStats) -> None:
        """Add another set of statistics over the same columns (Chan et al.)."""
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean.copy(), other.m2.copy()
            return
        if other.mean.shape != self.mean.shape:
            raise ValueError(f"cannot merge statistics of {other.mean.shape} columns into {self.mean.shape}")
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / n)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        self.count = n

    @property
    def std(self) -> np.ndarray:
        """Sample standard deviation (NaN with fewer than two samples)."""
        if self.count < 2:
            return np.full_like(self.mean, np.nan)
        return np.sqrt(self.m2 / (self.count - 1))

    def ci95(self) -> tuple[np.ndarray, np.ndarray]:
        """Student-t 95% confidence interval of the mean (NaN with fewer than two samples)."""
        if self.count < 2:
            nan = np.full_like(self.mean, np.nan)
            return nan, nan.copy()
        from scipy import stats as scipy_stats  # imported on first use: it adds a second to start-up

        half = scipy_stats.t.ppf(0.975, self.count - 1) * self.std / np.sqrt(self.count)
        return self.mean - half, self.mean + half
