"""Running mean and 95% confidence interval that merge across batches and shards."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RunningStats:
    """Per-column count, mean and sum of squared deviations (Welford/Chan).

    NaN is a missing value (an empty map has no entropy): each column counts
    its own values. Memory is one row whatever the number of samples; `merge`
    combines two shards into the statistics of their union.
    """

    count: int = 0  # rows seen
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    m2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # values per column

    @classmethod
    def of(cls, values: np.ndarray) -> RunningStats:
        """Statistics of the rows of `values` (samples × columns), NaN left out."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2:
            raise ValueError(f"values must be 2-D (samples, columns), got shape {v.shape}")
        present = ~np.isnan(v)
        counts = present.sum(axis=0)
        filled = np.where(present, v, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, filled.sum(axis=0) / counts, np.nan)
        m2 = np.where(present, (filled - mean) ** 2, 0.0).sum(axis=0)
        return cls(v.shape[0], mean, m2, counts)

    def update(self, values: np.ndarray) -> None:
        """Add the rows of `values`."""
        self.merge(RunningStats.of(values))

    def merge(self, other: RunningStats) -> None:
        """Add another set of statistics over the same columns (Chan et al.), column by column."""
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2, self.counts = (
                other.count, other.mean.copy(), other.m2.copy(), other.counts.copy())
            return
        if other.mean.shape != self.mean.shape:
            raise ValueError(f"cannot merge statistics of {other.mean.shape} columns into {self.mean.shape}")
        a, b = self.counts, other.counts
        n = a + b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = np.where((a > 0) & (b > 0), other.mean - self.mean, 0.0)
            share = np.where(n > 0, b / np.maximum(n, 1), 0.0)
            mean = np.where(a > 0, self.mean, other.mean) + delta * share
            self.m2 = np.where(a > 0, self.m2, 0.0) + np.where(b > 0, other.m2, 0.0) + delta**2 * a * share
        self.mean = np.where(n > 0, mean, np.nan)
        self.counts = n
        self.count += other.count

    @property
    def std(self) -> np.ndarray:
        """Sample standard deviation (NaN where a column has fewer than two values)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts >= 2, np.sqrt(self.m2 / np.maximum(self.counts - 1, 1)), np.nan)

    def ci95(self, within: tuple[float, float] = (-np.inf, np.inf)) -> tuple[np.ndarray, np.ndarray]:
        """Student-t 95% confidence interval of the mean (NaN where a column has fewer than two values).

        `within`: the range the values can take; the interval is cut to it (three wrong images' band
        would otherwise run from -10 to +20 bits).
        """
        if not (self.counts >= 2).any():
            nan = np.full_like(self.mean, np.nan)
            return nan, nan.copy()
        from scipy import stats as scipy_stats  # imported on first use: it adds a second to start-up

        dof = np.maximum(self.counts - 1, 1)
        half = scipy_stats.t.ppf(0.975, dof) * self.std / np.sqrt(np.maximum(self.counts, 1))
        return np.clip(self.mean - half, *within), np.clip(self.mean + half, *within)
