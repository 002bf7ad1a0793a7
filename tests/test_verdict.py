"""The superization verdict's guards (semiotui/docs/METHOD.md §3): content-free maps, empty maps, the control's
images and networks, zero differences, and how p-values are shown."""

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats
from torch import nn

from semiotui.engine.analysis import AnalysisResult, AnalysisSettings, ImageResult, analyse
from semiotui.engine.control import ControlSettings, control_analysis, control_rows, match_moments, shuffle_weights
from semiotui.engine.entropy import measure_maps, spatial_entropy
from semiotui.engine.superization import format_p, holm, summary, superization, wilcoxon_greater

pytestmark = pytest.mark.slow  # controls of many networks

RESOLUTIONS = (32, 16, 8, 4)


def _content_free(kind: str, count: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Maps with no arrangement at each native resolution: uniform noise, or ReLU'd Gaussian noise."""
    out = []
    for r in RESOLUTIONS:
        noise = torch.rand if kind == "uniform" else torch.randn
        m = noise(count, r, r, generator=generator, dtype=torch.float64)
        out.append(m if kind == "uniform" else torch.relu(m))
    return out


def _entropies(maps: list[torch.Tensor], estimator: str) -> np.ndarray:
    """Images × layers, each layer's maps measured at the input size (32x32) as the analysis does."""
    return np.stack([measure_maps(m, estimator=estimator, size=(32, 32))[0].numpy() for m in maps], axis=1)


@pytest.mark.parametrize("kind", ["uniform", "relu"])
def test_content_free_maps_at_each_resolution_give_no_drop_and_no_claim(kind):
    g = torch.Generator().manual_seed(1)
    names = [f"{r}x{r}" for r in RESOLUTIONS]
    plain = _entropies(_content_free(kind, 80, g), "aura")
    # The plain estimator reads resolution as steps: that is what the arrangement estimator must not do.
    assert np.ptp(plain.mean(axis=0)) > 0.9
    model = _entropies(_content_free(kind, 80, g), "arrangement")
    assert np.abs(model.mean(axis=0)).max() < 0.1
    control = np.stack([_entropies(_content_free(kind, 64, g), "arrangement") for _ in range(8)])
    s = superization(model, names, control=control, control_rows=range(64))
    assert not s.drop.any() and not s.step_drop.any() and not s.claimed


def test_maps_with_their_pixels_shuffled_give_no_drop_where_the_plain_estimator_repeats_the_steps():
    from semiotui.engine.demo import demo_images, load_demo_model
    from semiotui.engine.saliency import layer_saliency

    model = load_demo_model()
    batch = next(demo_images(count=48).batches(48))
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]
    maps = [m.double() for m in layer_saliency(model, batch.images, names).values()]
    g = torch.Generator().manual_seed(0)
    shuffled = []
    for m in maps:  # each map's own values, in a random arrangement at its native resolution
        flat = m.flatten(1)
        shuffled.append(flat.gather(1, torch.argsort(torch.rand(flat.shape, generator=g), dim=1)).view_as(m))

    def curve(maps: list[torch.Tensor], estimator: str) -> np.ndarray:
        return np.stack([measure_maps(m, estimator=estimator, size=(64, 64))[0].numpy() for m in maps], axis=1)

    # The plain estimator's steps come back with the arrangement destroyed: they read value distribution.
    real, mixed = np.diff(curve(maps, "aura").mean(axis=0)), np.diff(curve(shuffled, "aura").mean(axis=0))
    assert np.corrcoef(real, mixed)[0, 1] > 0.9
    arranged, scattered = curve(maps, "arrangement"), curve(shuffled, "arrangement")
    assert arranged.mean(axis=0).min() < -1.0  # the demo's real maps are ordered
    assert np.abs(scattered.mean(axis=0)).max() < 0.1
    assert not superization(scattered, names).drop.any()


def test_a_single_speck_counts_as_empty_and_two_pixels_do_not():
    speck = torch.zeros(8, 8, dtype=torch.float64)
    speck[3, 4] = 1e-3
    pair = speck.clone()
    pair[3, 5] = 2e-3
    _, empty = measure_maps(torch.stack([speck, pair, torch.zeros(8, 8, dtype=torch.float64)]))
    assert empty.tolist() == [True, False, True]
    bits, empty = measure_maps(speck[None], estimator="arrangement", size=(64, 64))
    assert bool(empty[0])
    settings = AnalysisSettings()
    assert settings.empty_value == 0.0 and np.isnan(AnalysisSettings(estimator="aura").empty_value)


def test_arrangement_is_the_aura_entropy_less_that_of_the_same_pixels_in_random_orders():
    from semiotui.engine.entropy import PERMUTATIONS, _permutations

    g = torch.Generator().manual_seed(2)
    blob = torch.zeros(8, 8, dtype=torch.float64)
    blob[2:5, 2:6] = torch.rand(3, 4, generator=g, dtype=torch.float64) + 1
    orders = _permutations(8, 8, PERMUTATIONS, torch.device("cpu"))
    shuffled = [blob.flatten()[o].view(8, 8) for o in orders]
    expected = float(spatial_entropy(blob, size=(32, 32))) - np.mean(
        [float(spatial_entropy(m, size=(32, 32))) for m in shuffled])
    assert float(spatial_entropy(blob, estimator="arrangement", size=(32, 32))) == pytest.approx(expected, abs=1e-12)
    assert expected < -1.0  # one compact blob holds far less entropy than its pixels scattered
    # A map's value does not depend on the batch it came in.
    batch = torch.stack([torch.rand(8, 8, generator=g, dtype=torch.float64), blob])
    assert float(measure_maps(batch, estimator="arrangement", size=(32, 32))[0][1]) == pytest.approx(expected)


def _rows(labels, predicted=None):
    predicted = predicted if predicted is not None else labels
    return [ImageResult(i, f"{label}/{i:03d}.png", label, p, 0.9, p, np.zeros(2), empty=np.zeros(2, bool))
            for i, (label, p) in enumerate(zip(labels, predicted))]


def test_the_control_takes_a_seeded_sample_spread_across_the_classes():
    # A class-folder tree in sorted order: its first 64 files are all of one class.
    labels = [0] * 70 + [1] * 70 + [2] * 70
    result = AnalysisResult(["a", "b"], AnalysisSettings(), "cpu", _rows(labels))
    rows = control_rows(result, 64, seed=0)
    counts = np.bincount([labels[k] for k in rows], minlength=3)
    assert len(rows) == 64 == len(set(rows)) and rows == sorted(rows)
    assert counts.min() >= 21 and counts.max() <= 22
    assert control_rows(result, 64, seed=0) == rows and control_rows(result, 64, seed=1) != rows
    unlabelled = AnalysisResult(["a", "b"], AnalysisSettings(), "cpu",
                                [ImageResult(r.index, r.name, None, r.predicted, 0.9, r.target, r.entropy)
                                 for r in _rows(labels)])
    by_prediction = np.bincount([labels[k] for k in control_rows(unlabelled, 60)], minlength=3)
    assert by_prediction.tolist() == [20, 20, 20]
    assert control_rows(result, 1000) == list(range(210))


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return self.head(x.mean(dim=(2, 3)))


def test_model_and_control_are_compared_on_the_same_images():
    torch.manual_seed(0)
    model = _Tiny().eval()
    x = torch.randn(90, 3, 12, 12)
    y = torch.tensor([0] * 30 + [1] * 30 + [2] * 30)
    result = analyse(model, [(x, y)], ["conv1", "conv2", "pool"], AnalysisSettings(device="cpu", batch_size=32))
    result.control = control_analysis(model, [(x[:40], y[:40]), (x[40:], y[40:])], result,
                                      ControlSettings(draws=4, images=30))
    control = result.control
    assert np.bincount(y[control.rows].numpy()).tolist() == [10, 10, 10]
    s = result.superization()
    assert np.allclose(s.control.model_mean, result.entropy[control.rows].mean(axis=0))
    # The control's images are read again from the analysis's source, each where it is.
    again = control_analysis(model, [(x[:10], y[:10]), (x[10:], y[10:])], result,
                             ControlSettings(draws=4, images=30))
    assert again.rows == control.rows and np.array_equal(again.entropy, control.entropy)


def _outputs(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    out = {}
    handles = [getattr(model, n).register_forward_hook(lambda m, a, o, n=n: out.__setitem__(n, o)) for n in names]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return out


def test_a_control_network_keeps_each_unit_working_as_the_model_does():
    torch.manual_seed(0)
    model = _Tiny().eval()
    x = torch.randn(32, 3, 12, 12) * torch.tensor([10.0, 0.1, 0.1]).view(1, 3, 1, 1)
    with torch.no_grad():  # a learned pattern: the first input channel, 100 times the others' scale, is damped
        model.conv1.weight[:, 0] *= 0.001
        model.conv1.weight[:, 1:] *= 10
    with torch.no_grad():  # batch norm statistics of a trained model: its channels' own on the data
        model.bn1.running_mean.copy_(model.conv1(x).mean(dim=(0, 2, 3)))
        model.bn1.running_var.copy_(model.conv1(x).var(dim=(0, 2, 3)))
    twin = _Tiny()
    twin.load_state_dict(model.state_dict())
    shuffle_weights(twin, 3)
    broken = _outputs(twin.eval(), x, ["conv1"])["conv1"].var(dim=(0, 2, 3)) / model.bn1.running_var
    assert match_moments(twin, model, x) == 3
    ours, theirs = _outputs(model, x, ["conv1", "conv2", "head"]), _outputs(twin, x, ["conv1", "conv2", "head"])
    for name in ("conv1", "conv2", "head"):
        dims = (0, 2, 3) if ours[name].dim() == 4 else (0,)
        assert torch.allclose(ours[name].mean(dim=dims), theirs[name].mean(dim=dims), atol=1e-4)
        assert torch.allclose(ours[name].std(dim=dims), theirs[name].std(dim=dims), rtol=1e-3)
    ratio = theirs["conv1"].var(dim=(0, 2, 3)) / model.bn1.running_var
    assert (broken - 1).abs().max() > 10 and torch.allclose(ratio, torch.ones(6), atol=1e-3)
    assert not torch.equal(twin.conv1.weight, model.conv1.weight)  # the learned pattern is still gone


def test_a_mostly_empty_layer_gets_no_verdict():
    rng = np.random.default_rng(0)
    n = 64
    model = np.stack([rng.normal(2, 0.1, n), rng.normal(0, 0.1, n), rng.normal(-2, 0.1, n)], axis=1)
    control = np.stack([np.stack([rng.normal(2, 0.1, n), rng.normal(2, 0.1, n), rng.normal(2, 0.1, n)], axis=1)
                        + rng.normal(0, 0.05) for _ in range(8)])
    names = ["a", "b", "c"]
    claimed = superization(model, names, control=control, control_rows=range(n))
    assert {(s.start, s.end) for s in claimed.claimed} == {(0, 1), (0, 2), (1, 2)}
    empty = np.zeros_like(model, dtype=bool)
    empty[: 2 * n // 3, 1] = True  # two thirds of the model's maps at b are empty
    guarded = superization(model, names, empty=empty, control=control, control_rows=range(n))
    assert {(s.start, s.end) for s in guarded.claimed} == {(0, 2)}
    assert all(s.untested == "mostly empty maps at b" for s in guarded.spans if 1 in (s.start, s.end))
    assert np.isnan(guarded.control.p_level[1]) and guarded.no_verdict.tolist() == [False, True, False]
    control_empty = np.zeros_like(control, dtype=bool)
    control_empty[:, :, 2] = True  # the control networks' maps at c are all empty
    guarded = superization(model, names, control=control, control_rows=range(n), control_empty=control_empty)
    assert {(s.start, s.end) for s in guarded.claimed} == {(0, 1)}
    assert any("no verdict there" in line for line in summary(guarded))


def test_fewer_control_networks_in_a_test_are_counted_and_said():
    rng = np.random.default_rng(1)
    n = 64
    model = np.stack([rng.normal(9, 0.2, n), rng.normal(6, 0.2, n)], axis=1)
    control = np.stack([np.stack([rng.normal(9, 0.2, n), rng.normal(8.5 + k * 0.05, 0.2, n)], axis=1)
                        for k in range(8)])
    control[:5, :, 1][rng.random((5, n)) < 0.1] = np.nan  # a few empty maps in five networks: all still count
    control[5:, :, 1] = np.nan  # three networks have no map at all at b (the plain estimator leaves them out)
    s = superization(model, ["a", "b"], control=control, control_rows=range(n))
    assert s.spans[0].networks == 5 and s.control.networks[1] == 5
    assert any("as few as 5" in line for line in summary(s))


def test_control_networks_that_do_not_vary_leave_the_span_untested():
    rng = np.random.default_rng(2)
    model = np.stack([rng.normal(9, 0.2, 40), rng.normal(6, 0.2, 40)], axis=1)
    control = np.repeat(np.stack([np.full(40, 9.0), np.full(40, 8.0)], axis=1)[None], 8, axis=0)
    s = superization(model, ["a", "b"], control=control, control_rows=range(40))
    assert s.spans[0].untested.startswith("the control networks' drops do not vary") and not s.claimed
    assert np.isnan(s.spans[0].p_null)


def test_zero_differences_count_half_each_way():
    d = np.array([0.0] * 40 + [0.5] * 10)  # 40 images with no change at all, 10 small drops
    dropped = scipy_stats.wilcoxon(d, alternative="greater").pvalue  # scipy's default leaves the zeros out
    assert dropped < 1e-3
    p = wilcoxon_greater(d)
    assert p == pytest.approx(scipy_stats.wilcoxon(d, alternative="greater", zero_method="zsplit").pvalue)
    assert p > 0.009
    s = superization(np.stack([d + 5, np.full(50, 5.0)], axis=1), ["a", "b"])
    assert s.p_value[1] == pytest.approx(p)


@pytest.mark.parametrize("n", range(7, 16))
def test_the_signed_rank_p_is_scipys_with_ties_zeros_or_neither(n):
    rng = np.random.default_rng(n)
    samples = [rng.normal(0.3, 1, n), np.round(rng.normal(0.3, 1, n), 1), rng.integers(-1, 3, n).astype(float),
               np.abs(rng.normal(0, 1, n)), -np.abs(rng.normal(0, 1, n))]
    for d in samples:
        if not np.any(d != 0):
            continue
        expected = scipy_stats.wilcoxon(d, alternative="greater", zero_method="zsplit").pvalue
        assert wilcoxon_greater(d) == pytest.approx(expected, rel=1e-12, abs=1e-15), d


def test_holm_counts_untested_hypotheses_in_its_family():
    assert np.allclose(holm([0.004, np.nan, np.nan], family=3), [0.012, np.nan, np.nan], equal_nan=True)
    assert np.allclose(holm([0.004, np.nan, np.nan]), [0.004, np.nan, np.nan], equal_nan=True)


@pytest.mark.parametrize("p, shown", [(0.0088, "0.0088"), (0.00996, "0.0099"), (0.0101, "0.011"), (0.01, "0.01"),
                                      (0.5, "0.5"), (0.123, "0.13"), (3e-7, "3.0e-07"), (np.nan, "—")])
def test_p_values_have_two_digits_and_never_round_across_the_threshold(p, shown):
    assert format_p(p) == shown
    if np.isfinite(p):
        assert (float(shown) < 0.01) == (p < 0.01)


def test_a_claim_by_a_model_no_better_than_chance_is_said_to_prove_nothing_of_the_labels():
    from dataclasses import replace

    from helpers import demo_workspace

    from semiotui.engine.reports.data import report_warnings

    ws = demo_workspace(40)
    result = analyse(ws.model, ws.images.batches(20), ws.layers, ws.settings)
    rng = np.random.default_rng(0)
    n, width = 40, len(result.layers)
    model = np.tile(np.linspace(0, -2, width), (n, 1)) + rng.normal(0, 0.05, (n, width))
    control = np.stack([np.tile(np.zeros(width), (n, 1)) + rng.normal(0, 0.05, (n, width)) + rng.normal(0, 0.05)
                        for _ in range(8)])
    claimed = superization(model, result.layers, control=control, control_rows=range(n))
    assert claimed.claimed
    assert not report_warnings(ws, result, claimed)  # the demo is right 98% of the time: nothing to say
    result.images = [replace(r, label=int(rng.integers(0, 8))) for r in result.images]  # labels it cannot know
    warnings = report_warnings(ws, result, claimed)
    assert len(warnings) == 1 and "not better than chance" in warnings[0]
    assert not report_warnings(ws, result, superization(model, result.layers))  # no claim, nothing to say
