"""One process against several under torchrun (gloo on CPU), on the demo's exported images.

Runs `semiotui report` once alone and once with `torchrun --nproc-per-node N`
on the same images, prints both wall times and checks that entropy.csv and the
layer statistics of report.json are identical.

    python benchmarks/sharded.py [--procs 2] [--threads 1]
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


def run(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        subprocess.run([sys.executable, "-m", "semiotui", "demo", "--export", str(demo)], check=True, env=env)
        images = sum(1 for _ in demo.rglob("*.png"))
        report = ["-m", "semiotui", "report", str(demo / "demo_model.pt"), "--trust", "--images", str(demo),
                  "--device", "cpu", "--maps", "0"]
        one = run([sys.executable, *report, "-o", f"{tmp}/one"], env)
        many = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc-per-node={args.procs}", *report, "-o", f"{tmp}/many"], env)
        same_csv = Path(f"{tmp}/one/entropy.csv").read_text() == Path(f"{tmp}/many/entropy.csv").read_text()
        layers = [json.loads(Path(f"{tmp}/{d}/report.json").read_text())["layers"] for d in ("one", "many")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.threads} thread(s) per process")
    print(f"images: {images} (semiotui demo --export), whole `semiotui report` command timed")
    print(f"1 process:           {one:7.1f} s")
    print(f"{args.procs} processes (gloo): {many:7.1f} s   speed-up {one / many:.2f}x")
    print(f"entropy.csv identical: {same_csv}; report.json layers identical: {layers[0] == layers[1]}")


if __name__ == "__main__":
    main()
