import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TinyNet
from semiotui.engine.analysis import AnalysisResult, AnalysisSettings, ImageResult, analyse
from semiotui.engine.data import ImageSource
from semiotui.engine.explain import add_contrast_maps, class_curves, contrast_pair, largest_steps, outcome_curves
from semiotui.engine.workspace import InputSpec


def _result(rows) -> AnalysisResult:
    """rows: (label, predicted, confidence, entropy per layer)."""
    images = [ImageResult(i, f"img{i}", label, predicted, conf, predicted, np.array(h, dtype=float))
              for i, (label, predicted, conf, h) in enumerate(rows)]
    return AnalysisResult(["a", "b", "c"], AnalysisSettings(), "cpu", images)


ROWS = [
    (0, 0, 0.9, [9, 5, 4]),
    (0, 0, 0.8, [9, 6, 4]),
    (0, 1, 0.7, [9, 9, 8]),  # wrong, and its curve does not drop at b
    (1, 1, 0.6, [8, 4, 3]),
    (1, 1, 0.95, [8, 5, 3]),
    (1, 0, 0.55, [8, 8, 2]),  # wrong
]


def test_class_curves_by_label_with_names():
    curves = class_curves(_result(ROWS), ["cat", "dog"])
    assert list(curves) == ["cat", "dog"]
    assert curves["cat"].count == 3
    assert curves["cat"].mean.tolist() == pytest.approx([9, 20 / 3, 16 / 3])
    assert curves["dog"].mean.tolist() == pytest.approx([8, 17 / 3, 8 / 3])


def test_class_curves_fall_back_to_predicted_class_without_labels():
    rows = [(None, p, c, h) for _, p, c, h in ROWS]
    curves = class_curves(_result(rows))
    assert {k: v.count for k, v in curves.items()} == {"0": 3, "1": 3}
    assert curves["1"].mean.tolist() == pytest.approx(np.mean([ROWS[i][3] for i in (2, 3, 4)], axis=0))


def test_outcomes_and_the_layer_where_they_part():
    out = outcome_curves(_result(ROWS))
    assert (out.correct.count, out.wrong.count) == (4, 2)
    assert out.correct.mean.tolist() == pytest.approx([8.5, 5, 3.5])
    assert out.wrong.mean.tolist() == pytest.approx([8.5, 8.5, 5])
    assert out.parting_layer == 1
    assert outcome_curves(_result([(None, 0, 0.5, [1, 2, 3])])) is None


def test_largest_step_per_image():
    h = np.array([[9, 5, 4], [9, 9, 8], [8, 8, 2]], dtype=float)
    assert largest_steps(h).tolist() == [1, 2, 2]
    assert largest_steps(np.ones((2, 1))).tolist() == [-1, -1]


def test_contrast_pair_is_the_most_confident_mistake_and_best_correct_of_its_class():
    assert contrast_pair(_result(ROWS)) == (2, 0)
    assert contrast_pair(_result([r for r in ROWS if r[0] == r[1]])) is None


def test_add_contrast_maps_draws_the_maps_of_the_contrast_pair_and_no_others():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)) for _ in range(6)]
    images = ImageSource.from_images(pictures, InputSpec((16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    model, layers = TinyNet().eval(), ["conv1", "conv2"]
    result = analyse(model, images.batches(3), layers, AnalysisSettings(batch_size=3, device="cpu"), keep_maps=0)
    assert add_contrast_maps(model, images, layers, result) is None  # no labels, no pair: nothing drawn
    assert all(r.maps is None for r in result.images)
    for r, (label, predicted) in zip(result.images, [(0, 0), (1, 0), (1, 1), (0, 0), (2, 2), (1, 1)]):
        r.label, r.predicted = label, predicted  # image 1 is the one mistake; 2 and 5 are right in its class
    pair = add_contrast_maps(model, images, layers, result)
    assert pair == contrast_pair(result) and pair[0] == 1 and pair[1] in (2, 5)
    assert [k for k, r in enumerate(result.images) if r.maps is not None] == sorted(pair)
    assert all(sorted(result.images[k].maps) == layers for k in pair)


def test_the_images_a_report_draws_span_the_classes_and_both_outcomes():
    from semiotui.engine.analysis import AnalysisResult, AnalysisSettings, ImageResult
    from semiotui.engine.explain import showcase

    # a sorted folder: ten images of class 0, then ten of 1, then ten of 2; image 23 is a mistake
    rows = [ImageResult(i, f"{i}", i // 10, 0 if i == 23 else i // 10, 0.5 + (i % 10) / 20, 0, np.zeros(2))
            for i in range(30)]
    picked = showcase(AnalysisResult(["a", "b"], AnalysisSettings(), "cpu", rows), 6)
    assert len(picked) == len(set(picked)) == 6
    assert picked[0] == 23  # the mistake
    assert {rows[k].label for k in picked} == {0, 1, 2}
    assert showcase(AnalysisResult(["a"], AnalysisSettings(), "cpu", rows[:3]), 6) == [2, 1, 0]


def test_a_band_never_leaves_the_range_entropy_can_take():
    from semiotui.engine.stats import RunningStats

    values = np.array([[0.1, 15.9], [3.0, 9.0], [0.2, 15.0]])  # three images: a wide band
    low, high = RunningStats.of(values).ci95((0.0, 16.0))
    assert (low >= 0).all() and (high <= 16).all() and low[0] == 0.0 and high[1] == 16.0
