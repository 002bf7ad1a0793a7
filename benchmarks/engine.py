"""Engine speed: semiotui's one-pass analysis against Captum looping over layers.

Measures, on the same model and inputs in one run:
  semiotui  all selected layers' gradcam + upsampling + spatial entropy (engine.analyze)
  captum    LayerGradCam once per layer + interpolate + a per-map numpy entropy
  floor     a plain forward and backward of the target score, with no hooks
and prints the ratios. Defaults are the issue's CPU setting (VGG16, 13 convs,
batch 4, 224x224, 2 threads); on a GPU use e.g. --model resnet50 --batch 64 --device cuda.

    python benchmarks/engine.py [--model vgg16] [--batch 4] [--size 224] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from semiotui.engine import AnalysisSettings, analyze, describe_device, resolve_device


def numpy_aura_entropy(m: np.ndarray, levels: int = 256) -> float:
    """docs/METHOD.md §2 for one map, written independently of the engine."""
    lo, hi = m.min(), m.max()
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return 0.0
    q = np.clip(np.floor((m - lo) / (hi - lo) * (levels - 1) + 0.5), 0, levels - 1).astype(np.int64)
    pairs = [(q[:, :-1], q[:, 1:]), (q[:-1, :], q[1:, :])]
    codes = np.concatenate([np.concatenate([(a * levels + b).ravel(), (b * levels + a).ravel()]) for a, b in pairs])
    p = np.bincount(codes, minlength=levels * levels) / codes.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """Median wall time of `repeats` runs after one warm-up, and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-captum", action="store_true", help="time only semiotui and the floor")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = torchvision.models.get_model(args.model, weights=None).eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    target = model(x).argmax(dim=1)
    settings = AnalysisSettings(batch_size=args.batch, device=str(device), target="label")

    def floor():
        model.zero_grad(set_to_none=True)
        model(x).gather(1, target[:, None]).sum().backward()

    def ours():
        return analyze(model, [(x, target)], layers, settings).entropy[:, :]

    def captum_loop():
        from captum.attr import LayerGradCam

        modules = dict(model.named_modules())
        out = np.zeros((args.batch, len(layers)))
        for j, name in enumerate(layers):
            cam = LayerGradCam(model, modules[name]).attribute(x, target=target, relu_attributions=True)
            up = F.interpolate(cam.detach(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            for b, m in enumerate(up.cpu().numpy().astype(np.float64)):
                out[b, j] = numpy_aura_entropy(m)
        return out

    print(f"machine: {platform.processor() or platform.machine()}, {describe_device(device)}, torch {torch.__version__}")
    print(f"model: {args.model}, {len(layers)} conv layers, batch {args.batch}, {args.size}x{args.size}, "
          f"median of {args.repeats}")
    t_floor, _ = timed(floor, device, args.repeats)
    t_ours, ours_h = timed(ours, device, args.repeats)
    print(f"floor (forward+backward, no hooks): {t_floor:8.3f} s")
    print(f"semiotui (all layers, one pass):    {t_ours:8.3f} s   {args.batch / t_ours:8.1f} images/s")
    print(f"semiotui / floor:                   {t_ours / t_floor:8.2f}x")
    if not args.skip_captum:
        t_captum, captum_h = timed(captum_loop, device, 1 if device.type == "cpu" else args.repeats)
        print(f"captum loop (per layer):            {t_captum:8.3f} s")
        print(f"captum loop / semiotui:             {t_captum / t_ours:8.2f}x")
        print(f"largest entropy difference:         {np.abs(ours_h - captum_h).max():.2e} bits")


if __name__ == "__main__":
    main()
