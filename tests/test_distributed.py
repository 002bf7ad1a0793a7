import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import write_tiny_inputs

pytestmark = pytest.mark.slow  # runs torchrun

TESTS = Path(__file__).parent


@pytest.fixture
def inputs(tmp_path):
    return write_tiny_inputs(tmp_path, images=13, size=24, classes=3)


def _report(inputs: Path, out: str, *, procs: int = 1, arch: str = "TinyNet") -> subprocess.CompletedProcess:
    runner = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
    command = ["-m", "semiotui", "report", str(inputs / "tiny.pth"), "--arch", f"helpers:{arch}",
               "--pythonpath", str(TESTS), "--images", str(inputs / "images"), "--input-size", "24", "24",
               "--device", "cpu", "--batch-size", "4", "--maps", "3", "-o", str(inputs / out)]
    argv = runner + command if procs > 1 else [sys.executable] + command
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def test_two_processes_under_torchrun_give_the_single_process_report(inputs):
    (inputs / "images" / "c1" / "broken.png").write_text("not an image")  # checked by one rank, skipped by both
    single, sharded = _report(inputs, "one"), _report(inputs, "two", procs=2)
    assert single.returncode == 0, single.stderr
    assert sharded.returncode == 0, sharded.stderr
    one, two = inputs / "one", inputs / "two"
    assert (one / "entropy.csv").read_text() == (two / "entropy.csv").read_text()
    a, b = (json.loads((d / "report.json").read_text()) for d in (one, two))
    assert a["layers"] == b["layers"] and a["images"] == b["images"] and a["classes"] == b["classes"]
    assert "2 processes (gloo)" in b["settings"]["device"]
    assert a["analysis"]["images"] == b["analysis"]["images"] == 13
    assert sharded.stderr.count("broken.png") == single.stderr.count("broken.png") == 1
    assert sorted(p.name for p in (one / "images").iterdir()) == sorted(p.name for p in (two / "images").iterdir())


def test_a_failing_rank_stops_the_run_with_one_message_and_no_report(inputs):
    white = inputs / "images" / "c2" / "zz_white.png"  # last image: in rank 1's shard
    Image.fromarray(np.full((24, 24, 3), 255, np.uint8)).save(white)
    run = _report(inputs, "rep", procs=2, arch="FailsOnBrightImages")
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("semiotui: error:")]
    assert errors == ["semiotui: error: rank 1 of 2 failed: the analysis failed on batch 2 (images/c2/08.png, "
                      "images/c2/11.png, images/c2/zz_white.png): cannot process a saturated image"]
    # torchrun prints its own launcher traceback; none comes from semiotui's code
    assert not re.search(r'File ".*/(engine|tui)/', run.stderr)
    assert not (inputs / "rep").exists() and not list(inputs.glob(".rep*"))
