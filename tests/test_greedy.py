import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from semiotui.engine import AnalysisSettings, analyse
from semiotui.engine.analysis import Batch
from semiotui.engine.greedy import PruneFinished, PruneSettings, StepDone, Trying, Working, _finetune, greedy_prune

ANALYSIS = AnalysisSettings(batch_size=16, device="cpu")


class Images:
    """Labelled tensors in memory, batch by batch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y
        self.labels = y.tolist()

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, batch_size: int):
        for lo in range(0, len(self.x), batch_size):
            yield Batch(self.x[lo : lo + batch_size], self.y[lo : lo + batch_size])

    def example(self) -> torch.Tensor:
        return self.x[:1]


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(16, 20, 3, padding=1), nn.BatchNorm2d(20), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(20, 24, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 3),
    ).eval()
    return model


def _run(model, layers, settings, images, cancel=None):
    events = list(greedy_prune(model, images, images, layers, settings, ANALYSIS, cancel=cancel))
    assert isinstance(events[-1], PruneFinished)
    return events


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture
def data():
    torch.manual_seed(1)
    x = torch.randn(24, 3, 16, 16) + 2 * torch.randn(24, 3, 1, 1)  # images that differ in colour
    return Images(x, torch.full((24,), -1))  # no labels: agreement with the original


CONVS = ["0", "4", "8"]


def test_target_parameters_gives_a_real_smaller_model_and_leaves_the_input_alone(data):
    model = small_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = PruneSettings(tolerance=1.0, target_params=0.7, finetune_batches=1, calibration_images=8)
    done = _run(model, CONVS, settings, data)[-1]
    pruned, log = done.model, done.log
    assert log.stopped_because == "target parameters reached"
    assert _params(pruned) <= 0.7 * _params(model) == 0.7 * log.original.parameters
    assert log.final.parameters == _params(pruned)
    assert pruned[1].num_features == pruned[0].out_channels  # batch norm followed its conv
    assert pruned(data.x).shape == (24, 3)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    for step in log.steps:
        assert step.accepted and step.channels_removed >= 1 and len(step.curve) == len(CONVS)


def test_a_move_that_costs_accuracy_is_rolled_back_and_its_layer_saturated():
    # a model trained to tell the images' dominant colour: halving a layer costs it some answers
    torch.manual_seed(2)
    offsets = torch.randn(48, 3)
    x = torch.randn(48, 3, 16, 16) + 2 * offsets[:, :, None, None]
    data = Images(x, offsets.argmax(1))
    model = small_cnn().train()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), data.y).backward()
        optimiser.step()
    model.eval()
    assert (model(x).argmax(1) == data.y).float().mean() > 0.9
    settings = PruneSettings(tolerance=0.0, fraction=0.5, finetune_batches=0, calibration_images=8)
    done = _run(model, CONVS, settings, data)[-1]
    rejected = [s for s in done.log.steps if not s.accepted]
    assert rejected
    assert done.log.stopped_because == "every layer is saturated"
    assert done.log.final.accuracy >= done.log.original.accuracy  # only moves that cost nothing stayed
    accepted = [s for s in done.log.steps if s.accepted]
    assert _params(done.model) == (accepted[-1].parameters if accepted else _params(model))
    for s in rejected:  # a rolled-back layer is never tried again
        assert not any(t.layer == s.layer for t in done.log.steps if t.index > s.index)


def test_max_steps_and_user_stop(data):
    model = small_cnn()
    settings = PruneSettings(tolerance=1.0, max_steps=2, finetune_batches=0, calibration_images=8)
    done = _run(model, CONVS, settings, data)[-1]
    assert done.log.stopped_because == "maximum number of steps reached"
    assert sum(s.accepted for s in done.log.steps) == 2
    cancel = threading.Event()
    events = []
    for event in greedy_prune(model, data, data, CONVS, PruneSettings(tolerance=1.0, finetune_batches=0,
                              calibration_images=8), ANALYSIS, cancel=cancel):
        events.append(event)
        if isinstance(event, StepDone):
            cancel.set()
    log = events[-1].log
    assert log.stopped_because == "stopped by the user" and len(log.steps) == 1
    assert _params(events[-1].model) == log.steps[0].parameters  # the step that finished is kept


def test_l1_baseline_removes_the_smallest_filters(data):
    model = small_cnn()
    with torch.no_grad():
        model[0].weight[[3, 7]] *= 1e-3  # two nearly empty filters
    settings = PruneSettings(criterion="l1", tolerance=1.0, max_steps=1, fraction=0.125, finetune_batches=0,
                             calibration_images=8)
    done = _run(model, ["0"], settings, data)[-1]
    pruned = done.model[0].weight
    assert pruned.shape[0] == 14
    norms = model[0].weight.abs().flatten(1).sum(1)
    keep = [k for k in range(16) if k not in (3, 7)]
    assert torch.allclose(pruned, model[0].weight[keep]) and norms[[3, 7]].max() < norms[keep].min()


def test_resnet18_is_pruned_into_a_valid_smaller_model_with_residual_adds_followed():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).eval()
    data = Images(torch.randn(8, 3, 32, 32), torch.full((8,), -1))
    layers = ["layer1.0.conv2", "layer2.0.conv1", "layer3.1.conv1"]
    settings = PruneSettings(tolerance=1.0, max_steps=2, finetune_batches=0, calibration_images=4)
    done = _run(model, layers, settings, data)[-1]
    pruned = done.model
    assert _params(pruned) < _params(model)
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    if any(s.layer == "layer1.0.conv2" for s in done.log.steps):
        # the residual stream of layer1 shrinks as one: stem, every block's output, the next block's input
        width = pruned.layer1[0].conv2.out_channels
        assert pruned.conv1.out_channels == pruned.bn1.num_features == pruned.layer1[1].conv2.out_channels == width
        assert pruned.layer2[0].conv1.in_channels == pruned.layer2[0].downsample[0].in_channels == width


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="criterion"):
        PruneSettings(criterion="random").check()
    with pytest.raises(ValueError, match="`target_params`"):
        PruneSettings(target_params=1.5).check()
    with pytest.raises(ValueError, match="`fraction`"):
        PruneSettings(fraction=0).check()


def test_fine_tuning_learns_the_labels_and_ends_in_eval_mode():
    torch.manual_seed(1)
    x = torch.randn(48, 3, 16, 16) + 2 * torch.randn(48, 3, 1, 1)
    labels = x.mean(dim=(2, 3)).argmax(1)  # the dominant colour
    model, reference = small_cnn(), small_cnn()
    before = [p.clone() for p in reference.parameters()]

    def accuracy() -> float:
        with torch.no_grad():
            return float((model(x).argmax(1) == labels).float().mean())

    assert accuracy() < 0.5
    done = list(_finetune(model, reference, Images(x, labels), PruneSettings(finetune_batches=60), ANALYSIS))
    assert done == list(range(1, 61))
    assert accuracy() == 1.0 and not model.training
    assert all(torch.equal(a, b) for a, b in zip(before, reference.parameters()))


def test_each_step_records_the_curve_of_the_model_it_made_and_final_is_the_last_kept(data):
    settings = PruneSettings(tolerance=1.0, max_steps=2, fraction=0.5, finetune_batches=0, calibration_images=8)
    events = _run(small_cnn(), CONVS, settings, data)
    finished = events[-1]
    steps = finished.log.steps
    assert len(steps) == 2 and all(s.accepted for s in steps)
    assert steps[0].curve != finished.log.original.curve  # half of a layer's channels are gone
    assert finished.log.final.curve == steps[-1].curve
    analysis = analyse(finished.model, [Batch(data.x[:8], data.y[:8])], CONVS,
                       replace(ANALYSIS, upsample=True))
    assert np.allclose(analysis.superization().mean, finished.log.final.curve)


def test_without_labels_the_score_is_agreement_and_a_coarse_held_out_set_is_named(data):
    settings = PruneSettings(tolerance=0.02, max_steps=1, finetune_batches=0, calibration_images=8)
    log = _run(small_cnn(), CONVS, settings, data)[-1].log
    assert log.measure == "agreement"
    assert log.warnings == ["the agreement is measured on 24 images: it moves in steps of 4.2%, more than the "
                            "tolerance of 2.0%; use more images or a larger held-out share"]
    labelled = Images(data.x, torch.arange(24) % 3)
    assert _run(small_cnn(), CONVS, settings, labelled)[-1].log.measure == "accuracy"


def test_each_event_of_a_step_names_its_layer_in_the_line_a_front_end_shows(data):
    settings = PruneSettings(tolerance=1.0, max_steps=1, fraction=0.5, finetune_batches=2, calibration_images=8)
    events = _run(small_cnn(), CONVS, settings, data)
    trying = next(e for e in events if isinstance(e, Trying))
    working = [e.text for e in events if isinstance(e, Working)]
    done = next(e for e in events if isinstance(e, StepDone))
    layer, step = trying.layer, done.step
    assert trying.text == f"step 1: trying {layer}"
    assert working == [f"step 1: {layer}, fine-tuning 1/2", f"step 1: {layer}, fine-tuning 2/2",
                       f"step 1: {layer}, measuring its entropy curve", f"step 1: {layer}, measuring its accuracy"]
    share = step.parameters / done.log.original.parameters
    assert done.text == (f"step 1: {layer} -{step.channels_removed} channels ({step.channels_left} left), "
                         f"parameters {share:.1%}, agreement {step.accuracy:.1%} (accepted)")  # no labels
    assert step.channels_removed == step.channels_left  # half of the layer's channels


class WithUnreadable(Images):
    """As an image source whose files are partly unreadable: some batches hold no image (only skipped files)."""

    def batches(self, batch_size: int):
        for lo in range(0, len(self.x), batch_size):
            yield Batch(self.x[:0], self.y[:0], [], indices=[], skipped=[(lo, f"{lo}.txt", "not an image")])
            yield Batch(self.x[lo : lo + batch_size], self.y[lo : lo + batch_size])


def test_batches_of_unreadable_files_are_neither_trained_on_nor_measured(data):
    images = WithUnreadable(data.x, data.y)
    model = small_cnn()
    events = _run(model, CONVS, PruneSettings(max_steps=1, finetune_batches=4, tolerance=1.0), images)
    pruned = events[-1].model
    assert all(torch.isfinite(t).all() for t in [*pruned.parameters(), *pruned.buffers()])  # BN's running stats too
    assert events[-1].log.steps and events[-1].log.final.parameters < _params(model)


def test_fine_tuning_on_files_none_of_which_is_readable_is_refused():
    from semiotui.engine.greedy import _cycle

    class Unreadable(Images):
        def batches(self, batch_size: int):
            yield Batch(self.x[:0], self.y[:0], [], indices=[], skipped=[(0, "a.txt", "not an image")])

    with pytest.raises(ValueError, match="no readable image to fine-tune on"):
        next(_cycle(Unreadable(torch.zeros(1, 3, 4, 4), torch.zeros(1)), 4))
