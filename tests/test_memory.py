import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import only_error_line, write_tiny_inputs

from semiotui.engine import opening
from semiotui.engine.errors import InvalidValue, LoadError
from semiotui.engine.loading import input_spec, load_model
from semiotui.tui.cli import main

# Runs in a fresh process so the peak resident memory (VmHWM) is this analysis's alone.
PROBE = r"""
import json, sys
import torch
sys.path.insert(0, sys.argv[2])
from helpers import TinyNet
from semiotui.engine import AnalysisSettings, analyze

def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

torch.set_num_threads(1)
model = TinyNet().eval()
images = int(sys.argv[1])

def batches(n):
    g = torch.Generator().manual_seed(0)
    for _ in range(n // 50):
        yield torch.randn(50, 3, 48, 48, generator=g)

settings = AnalysisSettings(batch_size=50, device="cpu")
analyze(model, batches(50), ["conv1", "conv2"], settings)  # warm up allocator and kernels
open("/proc/self/clear_refs", "w").write("5")  # reset the peak
before = vm("VmRSS")
result = analyze(model, batches(images), ["conv1", "conv2"], settings, keep_maps=4)
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
    with pytest.raises(LoadError, match=r"preprocess.json is not a valid preprocessing file \(input_size must be two "
                                        r"whole numbers from 1 to 4096 \[H, W\], got \[9000, 9000\]\); fix or remove it"):
        load_model(inputs / "tiny.pth", arch="helpers:TinyNet", pythonpath=[TESTS])
