"""Engine speed: semiotui's one-pass analysis against Captum looping over layers.

Measures, on the same model and inputs in one run:
  semiotui   all conv layers' gradcam + upsampling + spatial entropy (engine.analyse),
             and its two parts: the maps alone, and their entropy
  captum     LayerGradCam once per layer + interpolate + a per-map numpy entropy
  floor      what no all-layer saliency method can beat: one forward pass, and one
             backward pass of the target score that computes activation gradients
             only (no parameter gradients), down to the first measured layer
  full floor a forward and a full `.backward()` with parameter gradients, for reference
and prints the ratios, with the load average before and after each side.
Defaults are the CPU setting of RESULTS.md (VGG16, 13 convs, batch 4, 224x224,
2 threads); on a GPU use e.g. --model resnet50 --batch 64 --device cuda.

    python benchmarks/engine.py [--model vgg16] [--batch 4] [--size 224] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from semiotui.engine import AnalysisSettings, analyse, describe_device, resolve_device
from semiotui.engine.analysis import Batch, analyse_batch
from semiotui.engine.saliency import compute_saliency


def numpy_aura_entropy(m: np.ndarray, levels: int = 256) -> float:
    """semiotui/docs/METHOD.md §2 for one map, written independently of the engine."""
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


def timed(fns: dict, device: torch.device, repeats: int) -> tuple[dict, dict, str]:
    """Median wall time of each of `fns` over `repeats` rounds (after a warm-up of each), the last
    results, and the load around them. Each round runs every function once, so a slower moment of a
    shared machine slows all sides alike."""
    out = {name: fn() for name, fn in fns.items()}
    before = os.getloadavg()[0]
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            out[name] = fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    load = f"load {before:.2f} -> {os.getloadavg()[0]:.2f}"
    return {name: statistics.median(t) for name, t in times.items()}, out, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-captum", action="store_true", help="time only semiotui and the floors")
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = torchvision.models.get_model(args.model, weights=None).eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    modules = dict(model.named_modules())
    layers = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    target = model(x).argmax(dim=1)
    settings = AnalysisSettings(batch_size=args.batch, device=str(device), target="label")

    def floor():
        # Frozen parameters and a leaf at the first measured layer: autograd computes the
        # activation gradients from the score down to that layer, nothing more.
        first: list[torch.Tensor] = []

        def cut(module, inputs, output):
            first.append(output.detach().requires_grad_())
            return first[0].clone()  # a leaf cannot take the in-place ReLU that follows

        for p in model.parameters():
            p.requires_grad_(False)
        handle = modules[layers[0]].register_forward_hook(cut)
        try:
            torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), first)
        finally:
            handle.remove()
            for p in model.parameters():
                p.requires_grad_(True)

    def full_floor():
        model.zero_grad(set_to_none=True)
        model(x).gather(1, target[:, None]).sum().backward()

    def ours():
        return analyse(model, [(x, target)], layers, settings).entropy[:, :]

    def maps_only():
        return compute_saliency(model, x, layers, target=target, upsample=True)

    batch = Batch(x, target)

    def per_batch():  # what every batch after the first costs: no flow tracing
        return analyse_batch(model, batch, layers, settings, device, list(range(args.batch)), ())

    def captum_loop():
        from captum.attr import LayerGradCam

        out = np.zeros((args.batch, len(layers)))
        for j, name in enumerate(layers):
            cam = LayerGradCam(model, modules[name]).attribute(x, target=target, relu_attributions=True)
            up = F.interpolate(cam.detach(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            for b, m in enumerate(up.cpu().numpy().astype(np.float64)):
                out[b, j] = numpy_aura_entropy(m)
        return out

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{describe_device(device)}, torch {torch.__version__}")
    print(f"model: {args.model}, {len(layers)} conv layers, batch {args.batch}, {args.size}x{args.size}, "
          f"median of {args.repeats}")
    t, out, load = timed({"floor": floor, "full": full_floor, "ours": ours, "batch": per_batch, "maps": maps_only},
                         device, args.repeats)
    print(f"({load}; 1-minute load average, this benchmark's own threads included)")
    print(f"floor (forward + activation gradients): {t['floor']:8.3f} s")
    print(f"full floor (forward + full backward):   {t['full']:8.3f} s")
    print(f"semiotui (all layers, one pass):        {t['ours']:8.3f} s   {args.batch / t['ours']:.1f} images/s")
    print(f"  a later batch (no flow tracing):      {t['batch']:8.3f} s")
    print(f"  maps alone (gradcam + upsampling):    {t['maps']:8.3f} s")
    print(f"semiotui / floor:                       {t['ours'] / t['floor']:8.2f}x")
    print(f"semiotui / full floor:                  {t['ours'] / t['full']:8.2f}x")
    t_ours, ours_h = t["ours"], out["ours"]
    if not args.skip_captum:
        times, results, load = timed({"captum": captum_loop}, device, 1 if device.type == "cpu" else args.repeats)
        t_captum, captum_h = times["captum"], results["captum"]
        print(f"captum loop (per layer):                {t_captum:8.3f} s   ({load})")
        print(f"captum loop / semiotui:                 {t_captum / t_ours:8.2f}x")
        print(f"largest entropy difference:             {np.abs(ours_h - captum_h).max():.2e} bits")


if __name__ == "__main__":
    main()
