import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import write_tiny_inputs

pytestmark = pytest.mark.slow  # prunes with fine-tuning, in subprocesses too

TESTS = Path(__file__).parent


@pytest.fixture
def inputs(tmp_path):
    return write_tiny_inputs(tmp_path, images=16, size=20, classes=2)


def _command(inputs: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "semiotui", "prune", str(inputs / "tiny.pth"), "--arch", "helpers:TinyNet",
            "--pythonpath", str(TESTS), "--images", str(inputs / "images"), "--input-size", "20", "20",
            "--device", "cpu", "--finetune-batches", "1", "--tolerance", "1", *extra]


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_after_the_current_step_and_saves_the_model_and_log(inputs, signal_number):
    out = inputs / "pruned.pt"
    proc = subprocess.Popen(_command(inputs, "-o", str(out)), stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("step 1: trying"):
            proc.send_signal(signal_number)
    assert proc.wait(timeout=120) == 128 + signal_number, "".join(lines)  # as `semiotui report` and a shell say
    assert sum("stopping after the current step" in line for line in lines) == 1
    log = json.loads(out.with_suffix(".json").read_text())
    assert log["stopped_because"] == "stopped by the user"
    assert len(log["steps"]) == 1
    assert log["preprocess"] == {"input_size": [20, 20], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    model = torch.load(out, weights_only=False)
    assert sum(p.numel() for p in model.parameters()) == log["final"]["parameters"] < log["original"]["parameters"]
    assert not list(inputs.glob(".*tmp"))


def test_outputs_never_overwrite_the_input_or_earlier_results(inputs):
    model_bytes = (inputs / "tiny.pth").read_bytes()
    same = subprocess.run(_command(inputs, "-o", str(inputs / "tiny.pth"), "--force"), capture_output=True, text=True)
    assert same.returncode == 1 and "would overwrite the input" in same.stderr
    (inputs / "tiny.pt").write_bytes(model_bytes)
    clash = subprocess.run(_command(inputs, "-o", str(inputs / "tiny.pt")), capture_output=True, text=True)
    assert clash.returncode == 1 and "already exists" in clash.stderr
    assert (inputs / "tiny.pth").read_bytes() == model_bytes == (inputs / "tiny.pt").read_bytes()
    assert len(clash.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("out, message", [
    ("images/pruned.pt", "would be written into the input folder"),
    ("preprocess.pt", r"preprocess.json would overwrite the input"),  # its log, OUT.json, is the model's sidecar
])
def test_outputs_never_go_into_or_over_the_inputs_even_with_force(out, message, inputs, capsys):
    from semiotui.tui.cli import main

    (inputs / "preprocess.json").write_text(json.dumps({"input_size": [20, 20], "mean": [0.5] * 3, "std": [0.25] * 3}))
    before = {p: p.read_bytes() for p in sorted(inputs.rglob("*")) if p.is_file()}
    status = main([*_command(inputs, "-o", str(inputs / out), "--force", "--max-steps", "1")[3:]])
    err = capsys.readouterr().err
    assert status == 1 and re.search(message, err), err
    assert {p: p.read_bytes() for p in sorted(inputs.rglob("*")) if p.is_file()} == before
