import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import only_error_line, write_tiny_inputs

from semiotui.engine import opening
from semiotui.engine.entropy import measuring_bytes
from semiotui.engine.errors import InvalidValue, LoadError
from semiotui.engine.loading import input_spec, load_model
from semiotui.tui.cli import main

pytestmark = pytest.mark.slow  # measures fresh processes' memory

# A process's own memory (VmRSS, VmHWM: its peak), read where the probes below run, each in a fresh process.
VM = r"""
def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
"""

# Runs in a fresh process so the peak resident memory (VmHWM) is this analysis's alone.
PROBE = VM + r"""
import json, sys
import torch
sys.path.insert(0, sys.argv[2])
from helpers import TinyNet
from semiotui.engine import AnalysisSettings, analyse

torch.set_num_threads(1)
model = TinyNet().eval()
images = int(sys.argv[1])

def batches(n):
    g = torch.Generator().manual_seed(0)
    for _ in range(n // 50):
        yield torch.randn(50, 3, 48, 48, generator=g)

settings = AnalysisSettings(batch_size=50, device="cpu")
analyse(model, batches(50), ["conv1", "conv2"], settings)  # warm up allocator and kernels
open("/proc/self/clear_refs", "w").write("5")  # reset the peak
before = vm("VmRSS")
result = analyse(model, batches(images), ["conv1", "conv2"], settings, keep_maps=4)
assert result.stats.count == images
print(json.dumps({"before": before, "peak": vm("VmHWM")}))
"""


def _peak(images: int) -> dict:
    tests = str(Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", PROBE, str(images), tests], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak memory")
def test_memory_does_not_grow_with_the_number_of_images():
    small, large = _peak(200), _peak(2000)
    assert large["peak"] <= 1.2 * small["peak"]
    # Stricter than the ratio, which the process's baseline dominates: 1800 more images
    # may add at most 64 MiB (36 KiB each: allocator noise, not kept maps) above the warm baseline.
    assert (large["peak"] - large["before"]) - (small["peak"] - small["before"]) < 64 * 2**20


TESTS = Path(__file__).parent


@pytest.fixture
def inputs(tmp_path) -> Path:
    return write_tiny_inputs(tmp_path, images=4, size=16, classes=2)


def report(inputs: Path, *extra: str) -> int:
    return main(["report", str(inputs / "tiny.pth"), "--arch", "helpers:TinyNet", "--pythonpath", str(TESTS),
                 "--images", str(inputs / "images"), "--device", "cpu", "--no-control", "--maps", "0",
                 "-o", str(inputs / "out"), *extra])


def test_an_input_size_over_the_largest_is_refused_before_any_pixel_is_allocated(inputs):
    with pytest.raises(InvalidValue, match=r"^`input_size` 100000 100000 is over the largest side semiotui "
                                           r"analyses, 4096 pixels; pass a smaller `input_size` H W$"):
        input_spec(None, size=[100000, 100000])
    (inputs / "preprocess.json").write_text(json.dumps({"input_size": [9000, 9000], "mean": [0.5] * 3,
                                                       "std": [0.25] * 3}))
    with pytest.raises(LoadError, match=r"preprocess.json is not a valid preprocessing file \(input_size must be "
                                        r"two whole numbers from 1 to 4096 \[H, W\], got \[9000, 9000\]\); "
                                        r"fix or remove it"):
        load_model(inputs / "tiny.pth", arch="helpers:TinyNet", pythonpath=[TESTS])


def test_one_image_that_cannot_fit_in_the_memory_is_refused_with_what_to_change(inputs, monkeypatch, capsys):
    monkeypatch.setattr(opening, "available_memory", lambda device: 16 << 20)
    status = report(inputs, "--input-size", "512", "512")
    line = only_error_line(capsys.readouterr().err)
    assert status == 1
    assert re.fullmatch(r"semiotui: error: one 512x512 image needs about \d+ MiB on cpu \(the outputs of the model's "
                        r"layers with the 3 measured ones' copies and gradients, and the measuring of their maps\), "
                        r"more than the 13 MiB semiotui takes at most \(80% of the 16 MiB free\); pass a smaller "
                        r"--input-size, select fewer --layers, or use a device with more memory", line), line
    assert not (inputs / "out").exists()


def test_a_batch_too_large_for_the_memory_is_cut_to_one_that_fits(inputs, monkeypatch, capsys):
    monkeypatch.setattr(opening, "available_memory", lambda device: 256 << 20)
    assert report(inputs, "--input-size", "512", "512", "--estimator", "histogram") == 0
    warning = re.search(r"semiotui: warning: 32 images per batch need about ([\d.]+) GiB on cpu, more than the "
                        r"205 MiB semiotui takes at most \(80% of the 256 MiB free\); analysing (\d+) per batch",
                        " ".join(capsys.readouterr().err.split()))
    assert warning, "no warning"
    fits = int(warning.group(2))
    assert 1 <= fits < 32
    report_json = json.loads((inputs / "out" / "report.json").read_text())
    assert report_json["settings"]["batch_size"] == fits and report_json["analysis"]["images"] == 4


# The estimate the batch is cut by, against the peak of one batch in a fresh process.
ESTIMATE = VM + r"""
import json, sys
import torch
sys.path.insert(0, sys.argv[1])
from helpers import TinyNet
from semiotui.engine import AnalysisSettings, analyse
from semiotui.engine.entropy import measuring_bytes
from semiotui.engine.layers import index_layers
from semiotui.engine.opening import bytes_per_image
from semiotui.engine.workspace import InputSpec

torch.set_num_threads(2)
model, side, batch = TinyNet().eval(), 1024, 2
spec = InputSpec((side, side), (0.5,) * 3, (0.25,) * 3)
index = index_layers(model, torch.zeros(1, 3, side, side))
layers = index.default_selection()
settings = AnalysisSettings(batch_size=batch, device="cpu")
analyse(model, [torch.randn(1, 3, 32, 32)], layers, settings)  # warm up allocator and kernels
open("/proc/self/clear_refs", "w").write("5")  # reset the peak
before = vm("VmRSS")
analyse(model, [torch.randn(batch, 3, side, side)], layers, settings)
estimate = batch * bytes_per_image(index, layers, spec) + measuring_bytes(
    spec.size, levels=settings.levels, estimator=settings.estimator, device=torch.device("cpu"))
print(json.dumps({"peak": vm("VmHWM") - before, "estimate": estimate}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to measure peak memory")
def test_a_batch_cut_to_the_estimate_fits_in_the_memory_it_was_given():
    out = subprocess.run([sys.executable, "-c", ESTIMATE, str(TESTS)], capture_output=True, text=True, check=True)
    measured = json.loads(out.stdout)
    assert measured["peak"] <= measured["estimate"] / opening.MEMORY_SHARE, measured


def test_maps_measured_at_a_large_size_are_measured_a_few_at_a_time_on_any_device():
    for device in ("cpu", "cuda"):  # only the size of the pieces is asked for: no GPU needed
        assert measuring_bytes((4096, 4096), levels=256, estimator="aura", device=torch.device(device)) < 8 << 30
    assert measuring_bytes((224, 224), levels=256, estimator="aura", device=torch.device("cuda")) < 1 << 30


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="needs Linux /proc")
def test_the_memory_free_on_the_cpu_is_within_a_containers_limit(tmp_path, monkeypatch):
    from semiotui.engine import device

    cpu = torch.device("cpu")
    (tmp_path / "max").write_text("max\n")  # cgroup v2 without a limit
    (tmp_path / "limit").write_text(f"{300 << 20}\n")
    (tmp_path / "used").write_text(f"{100 << 20}\n")
    monkeypatch.setattr(device, "_CGROUP_MEMORY", ((tmp_path / "max", tmp_path / "used"),))
    machine = device.available_memory(cpu)
    assert machine > 200 << 20
    monkeypatch.setattr(device, "_CGROUP_MEMORY", ((tmp_path / "max", tmp_path / "used"),
                                                   (tmp_path / "limit", tmp_path / "used")))
    assert device.available_memory(cpu) == 200 << 20
