import threading

import numpy as np
import pytest
import torch
from torch import nn
from scipy import stats as scipy_stats

from semiotui.engine import (
    AnalysisSettings,
    Batch,
    BatchDone,
    Finished,
    Notice,
    RunningStats,
    analyse,
    layer_saliency,
    spatial_entropy,
    stream_analysis,
)
from semiotui.engine.device import OUT_OF_MEMORY
from semiotui.engine.errors import OutOfMemory

LAYERS = ["conv1", "relu", "conv2"]


def _batches(images: torch.Tensor, size: int, labels: torch.Tensor | None = None):
    for lo in range(0, len(images), size):
        yield Batch(images[lo : lo + size], None if labels is None else labels[lo : lo + size])


def test_streamed_entropy_equals_maps_measured_all_at_once(tiny_net):
    x = torch.randn(10, 3, 16, 16)
    result = analyse(tiny_net, _batches(x, 3), LAYERS, AnalysisSettings(batch_size=4, device="cpu"))
    assert result.layers == ["conv1", "relu#1", "conv2", "relu#2"]
    maps = layer_saliency(tiny_net, x, LAYERS)  # native: the arrangement estimator reorders before upsampling
    expected = torch.stack([spatial_entropy(m, estimator="arrangement", size=(16, 16)) for m in maps.values()],
                           dim=1).numpy()
    assert np.allclose(result.entropy, expected, rtol=0, atol=1e-9)
    plain = analyse(tiny_net, _batches(x, 3), LAYERS, AnalysisSettings(batch_size=4, device="cpu", estimator="aura"))
    upsampled = layer_saliency(tiny_net, x, LAYERS, upsample=True)
    expected = torch.stack([spatial_entropy(m) for m in upsampled.values()], dim=1).numpy()
    assert np.allclose(plain.entropy, expected, rtol=0, atol=1e-9)
    assert [r.index for r in result.images] == list(range(10))
    assert not result.cancelled


def test_running_mean_and_ci_equal_statistics_computed_at_once(tiny_net):
    x = torch.randn(13, 3, 16, 16)
    result = analyse(tiny_net, _batches(x, 5), LAYERS, AnalysisSettings(batch_size=2, device="cpu"))
    h = result.entropy
    assert result.stats.count == 13
    assert np.allclose(result.stats.mean, h.mean(axis=0), rtol=0, atol=1e-12)
    lo, hi = result.stats.ci95()
    sem = h.std(axis=0, ddof=1) / np.sqrt(13)
    want_lo, want_hi = scipy_stats.t.interval(0.95, 12, loc=h.mean(axis=0), scale=sem)
    assert np.allclose(lo, want_lo, atol=1e-12) and np.allclose(hi, want_hi, atol=1e-12)


def test_statistics_of_shards_merge_into_those_of_the_whole():
    rng = np.random.default_rng(0)
    values = rng.normal(5, 2, size=(101, 6))
    whole = RunningStats.of(values)
    merged = RunningStats()
    for shard in np.array_split(values, [7, 40, 41]):  # uneven shards, one of a single row
        part = RunningStats()
        for piece in np.array_split(shard, 3):
            part.update(piece)
        merged.merge(part)
    assert merged.count == whole.count
    assert np.allclose(merged.mean, whole.mean, rtol=1e-14, atol=0)
    assert np.allclose(merged.m2, whole.m2, rtol=1e-12, atol=0)
    assert np.allclose(merged.ci95(), whole.ci95(), rtol=1e-12, atol=0)


def test_events_report_progress_then_finish(tiny_net):
    x = torch.randn(7, 3, 16, 16)
    events = list(stream_analysis(tiny_net, _batches(x, 7), LAYERS,
                                  AnalysisSettings(batch_size=3, device="cpu"), total=7))
    progress = [e for e in events if isinstance(e, BatchDone)]
    assert [e.done for e in progress] == [3, 6, 7]
    assert all(e.total == 7 and e.rate > 0 for e in progress)
    assert isinstance(events[-1], Finished) and len(events[-1].result.images) == 7


def test_cancel_stops_after_the_current_batch_and_keeps_what_finished(tiny_net):
    x = torch.randn(20, 3, 16, 16)
    cancel = threading.Event()
    events = []
    for event in stream_analysis(tiny_net, _batches(x, 4), LAYERS,
                                 AnalysisSettings(batch_size=4, device="cpu"), cancel=cancel):
        events.append(event)
        if isinstance(event, BatchDone) and event.done == 8:
            cancel.set()
    result = events[-1].result
    assert result.cancelled
    assert [r.index for r in result.images] == list(range(8))
    assert result.stats.count == 8
    full = analyse(tiny_net, _batches(x, 4), LAYERS, AnalysisSettings(batch_size=4, device="cpu"))
    assert np.array_equal(result.entropy, full.entropy[:8], equal_nan=True)


class OutOfMemoryAbove(torch.nn.Module):
    """Wraps a model and fails like a full GPU when a batch is larger than `limit`."""

    def __init__(self, inner: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.inner = inner
        self.limit = limit

    def forward(self, x):
        if len(x) > self.limit:
            raise OUT_OF_MEMORY("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_halves_the_batch_retries_and_says_so(tiny_net):
    x = torch.randn(9, 3, 16, 16)
    layers = ["inner.conv1", "inner.conv2"]
    flaky = OutOfMemoryAbove(tiny_net, limit=2)
    events = list(stream_analysis(flaky, _batches(x, 9), layers, AnalysisSettings(batch_size=8, device="cpu")))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert notices == [
        "out of memory on cpu with 8 images per batch; retrying with 4",
        "out of memory on cpu with 4 images per batch; retrying with 2",
    ]
    result = events[-1].result
    plain = analyse(tiny_net, _batches(x, 9), ["conv1", "conv2"], AnalysisSettings(batch_size=9, device="cpu"))
    assert np.allclose(result.entropy, plain.entropy, atol=1e-9)
    with pytest.raises(OutOfMemory, match="even with one image per batch"):
        analyse(OutOfMemoryAbove(tiny_net, limit=0), _batches(x, 9), layers, AnalysisSettings(device="cpu"))


def test_kept_maps_are_small_thumbnails_of_chosen_images_only(tiny_net):
    x = torch.randn(6, 3, 40, 20)
    settings = AnalysisSettings(batch_size=4, device="cpu", thumbnail=10)
    result = analyse(tiny_net, _batches(x, 6), ["conv1", "conv2"], settings, keep_maps={1, 4})
    kept = {r.index for r in result.images if r.maps is not None}
    assert kept == {1, 4}
    thumb = result.images[4].maps["conv2"]
    assert thumb.dtype == np.float32 and thumb.shape == (10, 5)
    full = layer_saliency(tiny_net, x[4:5], ["conv2"], upsample=True)["conv2"][0]
    assert np.isclose(thumb.mean(), float(full.mean()), rtol=1e-4)


def test_predictions_labels_and_label_targets(tiny_net):
    x = torch.randn(5, 3, 16, 16)
    labels = torch.tensor([0, 1, 2, 3, 4])
    settings = AnalysisSettings(batch_size=5, device="cpu", target="label")
    result = analyse(tiny_net, _batches(x, 5, labels), LAYERS, settings)
    assert [r.target for r in result.images] == [0, 1, 2, 3, 4]
    assert [r.label for r in result.images] == [0, 1, 2, 3, 4]
    probs = torch.softmax(tiny_net(x), dim=1)
    assert [r.predicted for r in result.images] == probs.argmax(1).tolist()
    assert np.allclose([r.confidence for r in result.images], probs.max(1).values.detach().numpy())
    with pytest.raises(ValueError, match="needs a label for every image"):
        analyse(tiny_net, _batches(x, 5), LAYERS, settings)


@pytest.mark.parametrize(
    "field, value, message",
    [("method", "lime", "unknown method"), ("estimator", "renyi", "unknown estimator"),
     ("levels", 1, "levels"), ("levels", 46341, "levels must be from 2 to 4096"), ("batch_size", 0, "batch size"),
     ("target", "best", "target")],
)
def test_bad_settings_are_refused_before_any_work(tiny_net, field, value, message):
    settings = AnalysisSettings(**{field: value, "device": "cpu"})
    with pytest.raises(ValueError, match=message):
        analyse(tiny_net, [torch.randn(1, 3, 8, 8)], LAYERS, settings)


class DeadEnd(nn.Module):
    """Its last measured layer's Grad-CAM map is always empty: every channel's weight in the score is negative."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.r2 = nn.ReLU()
        self.fc = nn.Linear(8, 3)
        with torch.no_grad():
            self.fc.weight.copy_(-self.fc.weight.abs() - 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.r2(self.c2(self.c1(x))).mean(dim=(2, 3)))


def test_a_layer_of_empty_maps_is_counted_and_never_a_significant_step():
    x = torch.randn(30, 3, 16, 16)
    plain = AnalysisSettings(device="cpu", estimator="aura")
    result = analyse(DeadEnd().eval(), [x], ["c1", "c2", "r2"], plain)
    assert result.empty[:, 2].all() and not result.empty[:, :2].any()
    assert np.isnan(result.entropy[:, 2]).all()
    steps = result.superization()
    assert steps.empty.tolist() == [0, 0, 30] and steps.mostly_empty.tolist() == [False, False, True]
    assert steps.pairs[2] == 0 and not steps.drop[2] and not steps.significant.any()
    # counted as entropy 0 (the literal reading) the same maps read as a large, significant drop; a layer
    # of mostly empty maps still gets no verdict
    literal = analyse(DeadEnd().eval(), [x], ["c1", "c2", "r2"], AnalysisSettings(**{**plain.__dict__,
                                                                                      "count_empty": True}))
    steps = literal.superization()
    assert (literal.entropy[:, 2] == 0).all() and steps.delta[2] > 1 and steps.p_value[2] < 0.01
    assert not steps.drop[2]
    # The arrangement estimator gives an empty map 0 bits, its value for a map without arrangement: no drop.
    arranged = analyse(DeadEnd().eval(), [x], ["c1", "c2", "r2"], AnalysisSettings(device="cpu"))
    assert (arranged.entropy[:, 2] == 0).all() and arranged.empty[:, 2].all()
    steps = arranged.superization()
    assert steps.mostly_empty[2] and not steps.drop[2] and not steps.significant.any()


class Detached(nn.Module):
    """A model that cuts its features from the graph before the head (`.detach()`)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).detach().mean(dim=(2, 3)))


def test_a_model_that_detaches_its_layers_is_named_once_and_its_maps_are_empty():
    x = torch.randn(6, 3, 8, 8)
    events = list(stream_analysis(Detached().eval(), [x[:3], x[3:]], ["conv"],
                                  AnalysisSettings(device="cpu", batch_size=3)))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert len(notices) == 1 and "does not depend on conv" in notices[0]
    assert events[-1].result.empty.all()


def test_cancelling_the_control_stops_within_a_network_and_keeps_the_networks_finished(tiny_net, monkeypatch):
    from semiotui.engine import control as control_module
    from semiotui.engine.control import ControlProgress, ControlSettings, stream_control

    x = torch.randn(12, 3, 16, 16)
    result = analyse(tiny_net, [x], LAYERS, AnalysisSettings(device="cpu", batch_size=4))
    cancel, calls, analyse_batch = threading.Event(), [], control_module.analyse_batch

    def analyse_and_count(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:  # the third network's first batch of three: quitting, say
            cancel.set()
        return analyse_batch(*args, **kwargs)

    monkeypatch.setattr(control_module, "analyse_batch", analyse_and_count)
    events = list(stream_control(tiny_net, [x], result, ControlSettings(draws=4, images=12), cancel=cancel))
    assert len(calls) == 7  # not the third network's other two batches
    assert [e.done for e in events if isinstance(e, ControlProgress)] == [1, 2]
    control = events[-1].control
    assert control.cancelled and control.seeds == [0, 1] and control.entropy.shape == (2, 12, len(result.layers))


def test_the_control_shuffles_copies_and_leaves_the_model_alone(tiny_net):
    from semiotui.engine.control import ControlSettings, control_analysis

    x = torch.randn(12, 3, 16, 16)
    before = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    result = analyse(tiny_net, [x], LAYERS, AnalysisSettings(device="cpu"))
    control = control_analysis(tiny_net, [x], result, ControlSettings(draws=3, images=10, seed=5))
    assert all(torch.equal(v, tiny_net.state_dict()[k]) for k, v in before.items())
    assert control.entropy.shape == (3, 10, 4) and control.seeds == [5, 6, 7]
    assert len(set(control.rows)) == 10 and set(control.rows) <= set(range(12))
    assert control.shuffled == sum(p.numel() for p in tiny_net.parameters() if p.dim() > 1)
    assert not np.allclose(control.entropy[0], result.entropy[control.rows], equal_nan=True)
    again = control_analysis(tiny_net, [x], result, ControlSettings(draws=3, images=10, seed=5))
    assert np.array_equal(again.entropy, control.entropy, equal_nan=True)  # seeded
    result.control = control
    assert result.superization().control.draws == 3


def test_a_stop_asked_during_the_last_batch_cuts_nothing(tiny_net):
    """Ctrl-C while the last batch runs (or after it, in the control): every image was analysed, not cancelled."""
    x = torch.randn(8, 3, 16, 16)
    cancel = threading.Event()
    for event in stream_analysis(tiny_net, _batches(x, 4), LAYERS, AnalysisSettings(batch_size=4, device="cpu"),
                                 cancel=cancel, total=8):
        if isinstance(event, BatchDone) and event.done == 8:
            cancel.set()
    assert len(event.result.images) == 8 and not event.result.cancelled and event.result.partial is None
