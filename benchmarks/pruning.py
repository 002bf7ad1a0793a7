"""Semiotic against L1 greedy pruning on the demo, down to a fraction of the parameters.

Runs `semiotui prune` with each criterion, then measures every pruned model on
the images `semiotui demo --export` writes (the same check a user would make)
and prints accuracy, parameters, MACs, accepted and rolled-back steps, and time.

    python benchmarks/pruning.py [--target-params 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from semiotui.engine.data import ImageSource
from semiotui.engine.workspace import InputSpec


def accuracy(model: torch.nn.Module, folder: Path) -> float:
    """Top-1 accuracy on an exported demo folder, with its own preprocessing and class order."""
    meta = json.loads((folder / "preprocess.json").read_text())
    spec = InputSpec(tuple(meta["input_size"]), tuple(meta["mean"]), tuple(meta["std"]))
    images = ImageSource.from_paths([folder], spec, classes=meta["classes"])
    right = 0
    with torch.no_grad():
        for batch in images.batches(100):
            right += int((model(batch.images).argmax(1) == batch.labels).sum())
    return right / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-params", default="0.5")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "demo"
        subprocess.run([sys.executable, "-m", "semiotui", "demo", "--export", str(export)], check=True)
        original = accuracy(torch.load(export / "demo_model.pt", weights_only=False), export)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
        print(f"demo model on the {sum(1 for _ in export.rglob('*.png'))} exported images: {original:.1%}")
        print(f"{'criterion':10} {'params':>8} {'MACs':>8} {'accuracy':>9} {'drop':>6} {'steps':>6} "
              f"{'rolled back':>11} {'time':>7}")
        for criterion in ("semiotic", "l1"):
            out = Path(tmp) / f"{criterion}.pt"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "semiotui", "prune", "-o", str(out), "--criterion", criterion,
                            "--target-params", args.target_params], check=True, stderr=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            log = json.loads(out.with_suffix(".json").read_text())
            acc = accuracy(torch.load(out, weights_only=False), export)
            o, f = log["original"], log["final"]
            accepted = sum(s["accepted"] for s in log["steps"])
            print(f"{criterion:10} {f['parameters'] / o['parameters']:8.1%} {f['macs'] / o['macs']:8.1%} "
                  f"{acc:9.1%} {100 * (original - acc):5.1f}p {accepted:6d} {len(log['steps']) - accepted:11d} "
                  f"{seconds:6.0f}s")


if __name__ == "__main__":
    main()
