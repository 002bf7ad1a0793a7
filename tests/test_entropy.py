import json
import math

import numpy as np
import pytest
import torch

from helpers import TESTDATA
from semiotui.engine import spatial_entropy

VECTORS = json.loads((TESTDATA / "spatial_entropy_vectors.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_aura_entropy_reproduces_reference_vector(vector):
    m = torch.tensor(vector["map"], dtype=torch.float64)
    bits = spatial_entropy(m, levels=vector["levels"])
    norm = spatial_entropy(m, levels=vector["levels"], normalized=True)
    assert bits.shape == ()
    assert float(bits) == pytest.approx(vector["bits"], abs=1e-6)
    assert float(norm) == pytest.approx(vector["normalized"], abs=1e-6)


def test_batched_entropy_equals_each_map_alone():
    same_size = [v for v in VECTORS if np.array(v["map"]).shape == (4, 4) and v["levels"] == 256]
    assert len(same_size) >= 2
    batch = torch.tensor([v["map"] for v in same_size])
    bits = spatial_entropy(batch)
    assert bits.shape == (len(same_size),)
    assert bits.tolist() == pytest.approx([v["bits"] for v in same_size], abs=1e-6)


def test_numpy_input_and_float32_give_the_same_bits():
    rng = np.random.default_rng(1)
    maps = rng.random((3, 9, 11))
    from_numpy = spatial_entropy(maps)
    from_float32 = spatial_entropy(torch.tensor(maps, dtype=torch.float32))
    assert torch.allclose(from_numpy, from_float32.to(from_numpy.dtype), atol=1e-6)


def test_entropy_is_spatial_moving_pixels_changes_it_but_not_the_histogram():
    half = torch.zeros(8, 8)
    half[:, 4:] = 1.0  # two large regions
    scattered = torch.zeros(8, 8)
    scattered.view(-1)[::2] = 1.0  # same histogram, pixels interleaved
    assert float(spatial_entropy(half)) < float(spatial_entropy(scattered))
    h1 = spatial_entropy(half, estimator="histogram")
    h2 = spatial_entropy(scattered, estimator="histogram")
    assert float(h1) == pytest.approx(1.0) and float(h2) == pytest.approx(1.0)


def test_constant_map_has_zero_entropy_in_every_estimator():
    m = torch.full((5, 5), 3.25)
    assert float(spatial_entropy(m)) == 0.0
    assert float(spatial_entropy(m, estimator="histogram")) == 0.0
    # location: a uniform mass over 25 pixels is log2(25) bits
    assert float(spatial_entropy(m, estimator="location")) == pytest.approx(math.log2(25))
    assert float(spatial_entropy(torch.zeros(5, 5), estimator="location")) == 0.0


def test_one_by_n_map_counts_only_horizontal_pairs():
    ramp = torch.arange(8.0)[None]
    # 7 horizontal pairs in both orders: 14 distinct ordered pairs, each once
    assert float(spatial_entropy(ramp)) == pytest.approx(math.log2(14))
    assert float(spatial_entropy(torch.tensor([[1.0]]))) == 0.0


def test_location_entropy_of_a_point_is_zero_and_of_two_equal_points_one_bit():
    m = torch.zeros(4, 4)
    m[1, 1] = 2.0
    assert float(spatial_entropy(m, estimator="location")) == 0.0
    m[2, 3] = -2.0
    assert float(spatial_entropy(m, estimator="location")) == pytest.approx(1.0)
    assert float(spatial_entropy(m, estimator="location", normalized=True)) == pytest.approx(1 / 4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_maps_raise_instead_of_returning_zero(bad):
    m = torch.rand(2, 4, 4)
    m[1, 2, 2] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        spatial_entropy(m)


def test_bad_shapes_levels_and_estimators_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        spatial_entropy(torch.rand(4))
    with pytest.raises(ValueError, match="levels"):
        spatial_entropy(torch.rand(4, 4), levels=1)
    # the aura matrix has levels² cells, counted per map: 46341 levels took 24 GB
    with pytest.raises(ValueError, match=r"^levels must be from 2 to 4096 .*got 4097$"):
        spatial_entropy(torch.rand(4, 4), levels=4097)
    assert spatial_entropy(torch.rand(4, 4), levels=4096) > 0
    with pytest.raises(ValueError, match="estimator"):
        spatial_entropy(torch.rand(4, 4), estimator="renyi")


def test_large_batches_are_counted_in_chunks_with_the_same_result(monkeypatch):
    from semiotui.engine import entropy

    maps = torch.rand(7, 6, 6)
    whole = spatial_entropy(maps)
    monkeypatch.setattr(entropy, "_MAX_BINS_PER_CHUNK", 2 * 256 * 256)  # 2 maps per chunk
    assert torch.allclose(spatial_entropy(maps), whole, rtol=0, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batch_matches_reference_vectors():
    for v in VECTORS:
        m = torch.tensor(v["map"], device="cuda")
        bits = spatial_entropy(m[None].repeat(3, 1, 1), levels=v["levels"])
        assert bits.device.type == "cuda"
        assert bits.cpu().tolist() == pytest.approx([v["bits"]] * 3, abs=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_maps_measured_a_few_at_a_time_on_threads_give_the_one_pass_result(monkeypatch, threads):
    from semiotui.engine import entropy
    from semiotui.engine.entropy import measure_maps

    maps = torch.rand(23, 40, 40, dtype=torch.float64)
    maps[5] = 0.3  # constant: empty, 0 bits
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        chunked, empty = measure_maps(maps)  # 8 maps a chunk at 256 levels
        monkeypatch.setattr(entropy, "_CPU_BINS_PER_CHUNK", 1 << 30)
        monkeypatch.setattr(entropy, "_CPU_CHUNK_BYTES", 1 << 40)
        whole, _ = measure_maps(maps)  # one pass
    finally:
        torch.set_num_threads(before)
    assert torch.equal(chunked, whole)
    assert empty.tolist() == [i == 5 for i in range(23)] and chunked[5] == 0
    assert torch.equal(chunked, torch.stack([spatial_entropy(m) for m in maps]))


@pytest.mark.parametrize("levels", [3, 16, 256, 4096])
def test_counting_by_sorting_gives_the_binned_counts_result(monkeypatch, levels):
    from semiotui.engine import entropy

    rule = entropy._counted_by_sorting
    assert rule(32, 32, 256, torch.device("cpu")) and not rule(64, 64, 256, torch.device("cpu"))
    torch.manual_seed(levels)
    smooth = torch.nn.functional.interpolate(torch.rand(6, 1, 5, 5), size=(33, 33), mode="bilinear")[:, 0]
    two_valued, constant = torch.rand(1, 33, 33).round(), torch.full((1, 33, 33), 0.5)
    for shape_maps in (torch.rand(6, 12, 12), torch.cat([smooth, two_valued, constant])):
        monkeypatch.setattr(entropy, "_counted_by_sorting", lambda *args: True)
        by_sorting = spatial_entropy(shape_maps, levels=levels)
        monkeypatch.setattr(entropy, "_counted_by_sorting", lambda *args: False)
        binned = spatial_entropy(shape_maps, levels=levels)
        assert torch.allclose(by_sorting, binned, rtol=0, atol=1e-12), (by_sorting - binned).abs().max()
