"""`spatial_entropy` on the CPU: counting co-occurrences into levels² bins against sorting each map's pairs.

For each map size, times `measure_maps` on a batch of smooth maps (bilinear
upsampling of random small maps, as saliency maps are) with each counting
method forced, and with the rule the engine uses, and checks the results agree.

    python benchmarks/entropy.py [--threads 2] [--levels 256]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from semiotui.engine import entropy


def smooth_maps(count: int, side: int) -> torch.Tensor:
    small = torch.rand(count, 1, max(2, side // 4), max(2, side // 4))
    return F.interpolate(small, size=(side, side), mode="bilinear", align_corners=False)[:, 0].contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--levels", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rule = entropy._counted_by_sorting
    methods = {"binned": lambda *a: False, "sorted": lambda *a: True, "engine's rule": rule}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads, "
          f"torch {torch.__version__}, {args.levels} levels, median of {args.repeats}")
    print(f"{'maps':>12} {'binned':>10} {'sorted':>10} {'rule':>10}  rule picks")
    for side, count in [(28, 640), (32, 640), (48, 288), (64, 288), (112, 128), (224, 64)]:
        maps = smooth_maps(count, side)
        times: dict[str, list[float]] = {name: [] for name in methods}
        results = {}
        try:
            for _ in range(args.repeats + 1):  # the first round warms up
                for name, pick in methods.items():
                    entropy._counted_by_sorting = pick
                    start = time.perf_counter()
                    results[name] = entropy.measure_maps(maps, levels=args.levels)[0]
                    times[name].append(time.perf_counter() - start)
        finally:
            entropy._counted_by_sorting = rule
        assert torch.allclose(results["binned"], results["sorted"], rtol=0, atol=1e-12)
        ms = {name: 1000 * statistics.median(t[1:]) for name, t in times.items()}
        picked = "sorted" if rule(side, side, args.levels, torch.device("cpu")) else "binned"
        ruled = ms["engine's rule"]
        print(f"{count:4d} {side:3d}x{side:<3d} {ms['binned']:8.1f} ms {ms['sorted']:7.1f} ms {ruled:7.1f} ms  {picked}")


if __name__ == "__main__":
    main()
