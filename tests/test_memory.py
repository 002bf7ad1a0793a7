import json
import subprocess
import sys
from pathlib import Path

import pytest

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
