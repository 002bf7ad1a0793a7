"""Bad input (issue 3, item 4): each exits non-zero with one clear line, no traceback, and writes nothing.

Most cases run `semiotui report` in-process; a few run the real `python -m semiotui`
command in a subprocess, the path a user takes, which fails before any interface opens.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from helpers import only_error_line
from torch import nn

from semiotui.tui.cli import main


def flat_net() -> nn.Module:
    """No layer with a spatial output: a linear model on 16x16 images."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))


def conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def sized_net() -> nn.Module:
    """Accepts 16x16 images only (its head is sized for them)."""
    return nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 16 * 16, 4))


def make_inputs(root: Path) -> Path:
    """Every bad input of the issue, and good images, in `root/inputs`."""
    inputs = root / "inputs"
    images = inputs / "images"
    images.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(images / f"{i}.png")
    unreadable = inputs / "unreadable"
    unreadable.mkdir()
    (unreadable / "labels.csv").write_text("a,b\n")
    (unreadable / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (inputs / "empty.pt").write_bytes(b"")
    (inputs / "random.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (inputs / "notes.pt").write_text("epoch 3: loss 0.1\n")
    torch.save(conv_net(), inputs / "conv.pt")
    whole = (inputs / "conv.pt").read_bytes()
    (inputs / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    torch.save([1, 2, 3], inputs / "list.pt")
    torch.save(conv_net().state_dict(), inputs / "weights.pth")
    torch.save(flat_net(), inputs / "flat.pt")
    torch.save(sized_net(), inputs / "sized.pt")
    (inputs / "plain.pt").write_bytes(pickle.dumps({"conv": conv_net().state_dict()}, protocol=5))
    (inputs / "plain-model.pt").write_bytes(pickle.dumps(conv_net(), protocol=5))
    torch.save(conv_net().state_dict(), inputs / "weights5.pth", pickle_protocol=5)
    return inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("bad"))


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` with its bytes (None for folders)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


CASES = {
    # name: (arguments after the command, with {i} for the inputs folder; the message expected)
    "missing path": (["{i}/nope.pt", "--images", "{i}/images"], "nope.pt: no such file"),
    "a directory": (["{i}", "--images", "{i}/images"], "is a folder"),
    "an empty file": (["{i}/empty.pt", "--images", "{i}/images"], r"empty.pt is empty \(0 bytes\)"),
    "random bytes": (["{i}/random.pt", "--images", "{i}/images"], "not a PyTorch model file"),
    "a truncated archive": (["{i}/truncated.pt", "--images", "{i}/images", "--trust"], "truncated or damaged"),
    "a text file": (["{i}/notes.pt", "--images", "{i}/images"], "notes.pt is a text file"),
    "a pickle holding no model": (["{i}/list.pt", "--images", "{i}/images"], "holds a list, not a model"),
    "a state dict without --arch": (["{i}/weights.pth", "--images", "{i}/images"],
                                    r"holds a state dict .*--arch"),
    "--arch with keys that do not match": (
        ["{i}/weights.pth", "--arch", "resnet18", "--images", "{i}/images"],
        r"do not fit --arch resnet18: \d+ missing \(conv1.weight, .*\d+ unexpected \(0.weight, 0.bias\)",
    ),
    "a model with no spatial layer": (["{i}/flat.pt", "--trust", "--input-size", "16", "16", "--images",
                                       "{i}/images"], "flat.pt: no layer returns a spatial output"),
    "an input size over the largest": (["{i}/conv.pt", "--trust", "--input-size", "100000", "100000", "--images",
                                        "{i}/images"],
                                       r"--input-size 100000 100000 is over the largest side semiotui analyses, 4096 "
                                       r"pixels; pass a smaller --input-size H W$"),
    "an input size the model rejects": (["{i}/sized.pt", "--trust", "--input-size", "20", "20", "--images",
                                         "{i}/images"], r"rejects a 3x20x20 input .*--input-size H W"),
    "a full pickle without --trust": (["{i}/conv.pt", "--images", "{i}/images"],
                                      r"full pickle .*arbitrary code.*--trust"),
    "an image folder with nothing readable": (["{i}/conv.pt", "--trust", "--images", "{i}/unreadable"],
                                              r"no readable image in .*unreadable: 2 file\(s\) skipped"),
    "a model without images": (["{i}/conv.pt", "--trust"], "pass --images PATH"),
    **{f"--std {value}": (["{i}/conv.pt", "--trust", "--images", "{i}/images", "--std", value, "0.2", "0.2"],
                          rf"^semiotui: error: --std must be positive finite numbers, got {value} 0.2 0.2; give one "
                          r"per channel, e\.g\. ImageNet's 0\.229 0\.224 0\.225$")
       for value in ("inf", "nan", "0.0", "-0.5")},
    "--mean nan": (["{i}/conv.pt", "--trust", "--images", "{i}/images", "--mean", "nan", "0.5", "0.5"],
                   r"^semiotui: error: --mean must be finite numbers, got nan 0.5 0.5; give one per channel, "
                   r"e\.g\. ImageNet's 0\.485 0\.456 0\.406$"),
    "a plain pickle, not torch.save's": (
        ["{i}/plain.pt", "--images", "{i}/images"],
        r"^semiotui: error: \S*plain.pt is a plain Python pickle \(pickle.dump\), not a file torch.save wrote; "
        r"load it in Python and save it with torch.save\(model.state_dict\(\)\) \(then pass --arch\) or "
        r"torch.save\(model\)$"),
    "a plain pickle of a model, trusted": (["{i}/plain-model.pt", "--trust", "--images", "{i}/images"],
                                           r"plain-model.pt is a plain Python pickle"),
    "a state dict saved with pickle protocol 5": (
        ["{i}/weights5.pth", "--arch", "resnet18", "--images", "{i}/images"],
        r"^semiotui: error: \S*weights5.pth is pickled with protocol 5, which PyTorch reads only with its full "
        r"unpickler; unpickling can run arbitrary code, so semiotui does it only with --trust, for files you "
        r"trust \(safer: save it again with torch.save's default protocol\)$"),
    "--arch without a model file": (["--arch", "resnet18", "--images", "{i}/images"],
                                    r"^semiotui: error: --arch names the architecture of a weights file: pass that "
                                    r"file as MODEL \(with no MODEL, semiotui opens its bundled demo\)$"),
    "grey levels whose co-occurrence matrix fills the memory": (
        ["{i}/conv.pt", "--trust", "--images", "{i}/images", "--levels", "46341"],
        r"levels must be from 2 to 4096 .*got 46341"),
}


def arguments(case: str, inputs: Path) -> list[str]:
    return [a.replace("{i}", str(inputs)) for a in CASES[case][0]]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_with_one_line_and_writes_nothing(case, inputs, tmp_path, capsys):
    before = snapshot(inputs)
    out = tmp_path / "report"
    status = main(["report", *arguments(case, inputs), "-o", str(out), "--device", "cpu"])
    line = only_error_line(capsys.readouterr().err)
    assert status == 1
    assert re.search(CASES[case][1], line), line
    assert snapshot(inputs) == before
    assert not out.exists()


def test_debug_shows_the_traceback(inputs, capsys):
    assert main(["report", *arguments("random bytes", inputs), "-o", "unused", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("semiotui: error: ")


def test_usage_errors_exit_2(inputs, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(inputs / "conv.pt"), "--input-size", "16"])
    assert exit_.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.fixture(scope="module")
def command_runs(inputs) -> tuple[dict[str, tuple[int, str]], dict[str, bytes | None]]:
    """`python -m semiotui MODEL ...` for a few cases, run side by side (each pays Python's start-up).

    Returns each run's status and stderr, and the inputs as they were before the runs.
    """
    before = snapshot(inputs)
    cases = ["missing path", "a full pickle without --trust", "a state dict saved with pickle protocol 5"]
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # a warning printed on stderr would break the one line
    runs = {
        case: subprocess.Popen([sys.executable, "-m", "semiotui", *arguments(case, inputs), "--device", "cpu"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=inputs)
        for case in cases
    }
    results = {}
    for case, process in runs.items():
        try:
            _, err = process.communicate(timeout=120)
        finally:
            process.kill()
        results[case] = (process.returncode, err)
    return results, before


@pytest.mark.parametrize("case", ["missing path", "a full pickle without --trust",
                                  "a state dict saved with pickle protocol 5"])  # torch warns of protocol 5
@pytest.mark.slow  # the command in subprocesses
def test_the_real_command_fails_before_the_interface_opens(case, command_runs, inputs):
    results, before = command_runs
    status, err = results[case]
    assert status == 1
    line = only_error_line(err)
    assert re.search(CASES[case][1], line), line
    assert snapshot(inputs) == before
