import numpy as np
import pytest
from scipy import stats as scipy_stats

from semiotui.engine import holm, superization
from semiotui.engine.superization import step_drops

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
    assert s.drop.tolist() == [False, True, False, False]  # only the drop; the rise is no drop
    assert not s.significant.any()  # and without a control no drop is called superization


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


def test_empty_maps_are_left_out_of_the_curve_and_the_steps_and_counted():
    h = _entropies(30)
    h[:10, 1] = np.nan  # ten images whose map of layer b is empty
    empty = np.isnan(h)
    s = superization(h, LAYERS, empty=empty)
    assert s.empty.tolist() == [0, 10, 0, 0] and s.pairs.tolist() == [0, 20, 20, 30]
    assert np.isclose(s.mean[1], np.nanmean(h[:, 1]))
    assert np.isclose(s.delta[1], np.nanmean(h[:, 0] - h[:, 1]))
    assert not s.mostly_empty.any()


def test_a_layer_of_empty_maps_has_no_step_and_is_flagged():
    h = _entropies(30)
    h[:, 1] = np.nan
    s = superization(h, LAYERS, empty=np.isnan(h))
    assert s.pairs[1] == 0 and s.pairs[2] == 0 and np.isnan(s.p_value[1:3]).all()
    assert s.mostly_empty.tolist() == [False, True, False, False]
    assert not s.drop.any() and not s.significant.any()


def test_steps_follow_the_given_parents_and_branches_have_none():
    h = np.array([[9.0, 8.0, 5.0, 7.0]])
    drops = step_drops(h, [None, 0, None, 1])  # layer c is a branch off the main path a -> b -> d
    assert np.isnan(drops[0, [0, 2]]).all() and drops[0, 1] == 1.0 and drops[0, 3] == 1.0
    s = superization(np.repeat(h, 8, axis=0), LAYERS, parents=[None, 0, None, 1])
    assert np.isnan(s.delta[2]) and s.largest_step in (1, 3)


def _control(model: np.ndarray, draws: int, shift: float, spread: float, seed: int = 1) -> np.ndarray:
    """Control entropies: the model's, with each draw's drops changed by `shift` plus a draw effect of `spread`."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        h = model.copy()
        effect = rng.normal(shift, spread, size=h.shape[1])  # one offset per layer and network
        h[:, 1:] += effect[1:] + rng.normal(0, 0.05, size=h[:, 1:].shape)
        out.append(h)
    return np.stack(out)


def test_a_drop_far_beyond_every_control_network_is_superization():
    h = _entropies(40)
    s = superization(h, LAYERS, control=_control(h, 8, shift=1.5, spread=0.05))
    assert s.control is not None and s.control.draws == 8 and s.control.pairs[1] == 40
    assert s.significant.tolist() == [False, True, False, False]
    assert np.isclose(s.control.delta[1], s.delta[1] - 1.5, atol=0.1)


def test_a_drop_the_controls_make_as_well_is_not_superization():
    h = _entropies(40)
    s = superization(h, LAYERS, control=_control(h, 8, shift=0.0, spread=0.05))
    assert s.drop[1] and not s.significant.any()


def test_beating_the_control_image_by_image_is_not_enough_when_control_networks_differ_more():
    h = _entropies(40)
    # Every image's drop is 0.5 bits above the controls' mean, but one control network differs from the
    # next by more than that: a single network of random weights would pass a paired test alone.
    s = superization(h, LAYERS, control=_control(h, 8, shift=0.5, spread=1.0, seed=3))
    paired = scipy_stats.wilcoxon((h[:, 0] - h[:, 1]) - s.control.delta[1], alternative="greater").pvalue
    assert paired < 0.01
    assert s.control.p_null[1] > 0.01 and not s.significant[1]


def test_spans_run_from_each_layer_to_every_deeper_one_along_the_parents():
    from semiotui.engine.superization import span_pairs

    assert span_pairs([None, 0, 1, 2]) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert span_pairs([None, 0, None, 1]) == [(0, 1), (0, 3), (1, 3)]  # c is a branch: no span through it
    h = _entropies(40)
    s = superization(h, LAYERS, control=_control(h, 8, shift=1.5, spread=0.05))
    assert s.family == 6 and [(x.start, x.end) for x in s.spans] == span_pairs([None, 0, 1, 2])
    claimed = {(x.start, x.end) for x in s.claimed}
    assert (0, 1) in claimed and (2, 3) not in claimed  # a rise is never superization
    best = s.finding
    assert best is not None and best.start == 0 and best.claimed and best.networks == 8
    low, high = best.interval
    assert low < best.excess < high and best.excess > 1.0
