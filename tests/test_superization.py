import numpy as np
import pytest
from scipy import stats as scipy_stats

from semiotui.engine import holm, superization

LAYERS = ["a", "b", "c", "d"]


def _entropies(n: int, seed: int = 0) -> np.ndarray:
    """Images × layers: a clear drop a→b, noise b→c, a clear rise c→d."""
    rng = np.random.default_rng(seed)
    base = rng.normal(10, 0.3, size=n)
    return np.stack(
        [base, base - 2 + rng.normal(0, 0.2, n), base - 2 + rng.normal(0, 0.2, n), base + rng.normal(0, 0.2, n)],
        axis=1,
    )


def test_curve_and_steps_are_means_of_per_image_drops():
    h = _entropies(30)
    s = superization(h, LAYERS)
    assert s.count == 30
    assert np.allclose(s.mean, h.mean(axis=0))
    assert np.isnan(s.delta[0]) and np.isnan(s.p_value[0]) and not s.significant[0]
    assert np.allclose(s.delta[1:], (h[:, :-1] - h[:, 1:]).mean(axis=0))
    assert s.largest_step == 1
    lo, hi = scipy_stats.t.interval(0.95, 29, loc=h.mean(0), scale=scipy_stats.sem(h, axis=0))
    assert np.allclose(s.ci_low, lo) and np.allclose(s.ci_high, hi)


def test_significance_is_one_sided_wilcoxon_with_holm_correction():
    h = _entropies(30)
    s = superization(h, LAYERS)
    raw = [scipy_stats.wilcoxon(h[:, i - 1] - h[:, i], alternative="greater").pvalue for i in (1, 2, 3)]
    order = np.argsort(raw)
    adjusted = np.empty(3)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[i]))
        adjusted[i] = running
    assert np.allclose(s.p_value[1:], adjusted)
    assert s.significant.tolist() == [False, True, False, False]  # only the drop; the rise is not superization


def test_one_image_shows_only_sign_and_size_of_steps():
    s = superization(np.array([[5.0, 3.0, 4.0]]), ["x", "y", "z"])
    assert s.delta[1:].tolist() == [2.0, -1.0]
    assert np.isnan(s.p_value).all() and not s.significant.any()
    assert np.isnan(s.ci_low).all()


def test_no_change_anywhere_is_not_significant():
    s = superization(np.ones((12, 3)), ["x", "y", "z"])
    assert s.p_value[1:].tolist() == [1.0, 1.0] and not s.significant.any()


def test_holm_keeps_nans_out_and_is_monotone():
    assert np.allclose(holm([0.01, np.nan, 0.04, 0.03]), [0.03, np.nan, 0.06, 0.06], equal_nan=True)
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_shape_mismatch_is_explained():
    with pytest.raises(ValueError, match="3 layers"):
        superization(np.zeros((4, 2)), ["x", "y", "z"])
