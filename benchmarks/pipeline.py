"""Where `semiotui report` spends its time: the whole pipeline against the engine alone.

Writes image files, then in one run:
  engine     `analyse` on the same images already decoded and normalised in memory
             (the same model, layers, settings and batch size)
  pipeline   `semiotui report --no-control` on the files, in this process, with each
             stage timed: listing, decoding, resizing, normalising (in the reading
             threads, beside the analysis), waiting for images (what the reading
             threads did not hide), saliency, entropy, statistics, thumbnails,
             the report's maps, and writing
and prints the breakdown, images per second of each, and their ratio.

    python benchmarks/pipeline.py [--model demo|resnet18] [--images N] [--batch B] [--threads 2] [--control]

With --control the report also runs its control analysis (8 shuffled networks on
the first 64 images), timed as its own stage.

`demo`: the bundled demo (64x64 PNGs of its validation set); `resnet18`: torchvision's,
random weights, as a state dict with --arch, on 256x256 JPEGs prepared to 224x224.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import os
import platform
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from semiotui.engine import AnalysisSettings, analyse, describe_device, resolve_device
from semiotui.engine import analysis, data, session, stats
from semiotui.engine.reports import write
from semiotui.engine.analysis import Batch
from semiotui.tui import cli, commands


class Stages:
    """Seconds spent in each patched function, summed over threads, and calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def timing(self, patches: list[tuple[object, str, str]]):
        """Wrap `owner.attribute` for each (owner, attribute, stage) for the block."""
        originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
        for (owner, name, stage), (_, _, original) in zip(patches, originals):
            setattr(owner, name, self._timed(original, stage))
        try:
            yield
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)

    def _timed(self, fn, stage: str):
        def add(start: float) -> None:
            with self._lock:
                self.seconds[stage] += time.perf_counter() - start
                self.calls[stage] += 1

        if inspect.isgeneratorfunction(fn):  # a stream: from its first event to its last
            @functools.wraps(fn)
            def streamed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    yield from fn(*args, **kwargs)
                finally:
                    add(start)

            return streamed

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                add(start)

        return timed


def write_images(folder: Path, model: str, count: int) -> tuple[list[str], int]:
    """Image files for the run; returns the report command's model arguments and the input side."""
    folder.mkdir(parents=True)
    if model == "demo":
        from semiotui.engine import demo

        spec = demo.INPUT_SPEC
        source = demo.demo_images("val", count, spec)
        for i in range(len(source)):
            Image.fromarray(source.image(i)).save(folder / f"{i:05d}.png")
        return [], spec.size[0]
    rng = np.random.default_rng(0)
    for i in range(count):
        smooth = rng.random((8, 8, 3)) * 255  # smooth colour fields, JPEG-sized like photos of that size
        pixels = np.asarray(Image.fromarray(smooth.astype(np.uint8)).resize((256, 256), Image.Resampling.BICUBIC))
        noise = rng.normal(0, 12, pixels.shape)
        Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    import torchvision

    weights = folder.parent / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    return [str(weights), "--arch", "resnet18"], 224


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["demo", "resnet18"], default="demo")
    parser.add_argument("--images", type=int, default=None, help="default: 1000 (demo), 64 (resnet18)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--control", action="store_true", help="keep the report's control analysis")
    args = parser.parse_args()
    count = args.images or (1000 if args.model == "demo" else 64)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        model_args, side = write_images(folder, args.model, count)
        command = ["report", *model_args, "--images", str(folder), "--device", "cpu",
                   "--batch-size", str(args.batch), "-o", str(Path(tmp) / "report")]
        command += [] if args.control else ["--no-control"]

        # The engine alone: the workspace's images decoded beforehand, batches in memory.
        from semiotui.engine.opening import open_workspace

        workspace = open_workspace(model_args[0] if model_args else None, arch=model_args[2] if model_args else None,
                                   images=[str(folder)],
                                   settings=AnalysisSettings(batch_size=args.batch, device="cpu"), control=None)
        ready = [Batch(b.images, b.labels, b.names) for b in workspace.images.batches(args.batch)]
        analyse(workspace.model, ready[:1], workspace.layers, workspace.settings)  # warm-up
        start = time.perf_counter()
        analyse(workspace.model, ready, workspace.layers, workspace.settings)
        engine_seconds = time.perf_counter() - start
        load_engine = os.getloadavg()[0]

        stages = Stages()
        patches = [
            (data, "_find_files", "listing the files"),
            (data, "_open", "decoding (reading threads)"),
            (data, "to_mode", "colour conversion (reading threads)"),
            (data, "fit", "resizing (reading threads)"),
            (data.ImageSource, "_load", "reading, all of it (reading threads)"),
            (data.ImageSource, "example", "reading the first image (opening)"),
            (data.ImageSource, "_batch", "waiting for images (analysis thread)"),
            (analysis, "compute_saliency", "saliency (forward + backward)"),
            (analysis, "_entropy_of_maps", "entropy"),
            (stats.RunningStats, "update", "statistics"),
            (analysis, "_thumbnails", "thumbnails"),
            (commands, "control_with_progress", "the control (shuffled networks)"),
            (session, "add_maps", "the report's maps (one more pass)"),  # the command's jobs run on the session
            (session, "stream_analysis", "the analysis, end to end"),
            (session, "add_contrast_maps", "the report's contrast maps"),
            (write, "write_report", "writing the report"),
        ]
        with stages.timing(patches):
            start = time.perf_counter()
            status = cli.main(command)
            pipeline_seconds = time.perf_counter() - start
        if status:
            raise SystemExit(f"semiotui report failed with {status}")
        load_pipeline = os.getloadavg()[0]

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{describe_device(resolve_device('cpu'))}, torch {torch.__version__}")
    print(f"model: {args.model} ({len(workspace.layers)} layers measured), {count} images at {side}x{side}, "
          f"batch {args.batch}")
    print(f"(load after each: engine {load_engine:.2f}, pipeline {load_pipeline:.2f}; 1-minute load average, "
          "this benchmark's own threads included)")
    analysing = stages.seconds["the analysis, end to end"]
    print(f"{'stage':44s} {'seconds':>8s} {'calls':>6s}")
    for _, _, stage in patches:
        if stage in stages.seconds:
            print(f"{stage:44s} {stages.seconds[stage]:8.3f} {stages.calls[stage]:6d}")
    print(f"{'semiotui report, the whole command':44s} {pipeline_seconds:8.3f}")
    print(f"engine alone (images in memory):           {count / engine_seconds:8.1f} images/s   {engine_seconds:.3f} s")
    print(f"pipeline, its analysis (files to entropy): {count / analysing:8.1f} images/s   {analysing:.3f} s")
    print(f"pipeline, the whole command:               {count / pipeline_seconds:8.1f} images/s")
    print(f"engine / pipeline's analysis:              {analysing / engine_seconds:8.2f}x the time")


if __name__ == "__main__":
    main()
