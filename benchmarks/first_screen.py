"""Time to the first analysed image when the interface opens a large folder of images.

Writes N small JPEGs (default 20000, 64x64, the bundled demo's input size), then opens
them as `semiotui --images DIR` does (the demo model), headless, and times until the
saliency pane shows the first image's entropy: from the start of this process (imports
included) and from opening the folder. For scale, it then times decoding every file
once, which is what opening cost when each file was checked before the first screen.

    python benchmarks/first_screen.py [--images 20000] [--threads 2]
"""

import time

STARTED = time.perf_counter()  # before the imports: a user waits for them too

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from semiotui.engine import data  # noqa: E402
from semiotui.tui.app import SemiotuiApp  # noqa: E402
from semiotui.tui.cli import build_parser  # noqa: E402
from semiotui.tui.saliency import SaliencyView  # noqa: E402
from semiotui.tui.workspace_args import workspace_from_args  # noqa: E402


def write_jpegs(folder: Path, count: int) -> float:
    """`count` distinct 64x64 JPEGs; returns the seconds it took."""
    start = time.perf_counter()
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for i in range(count):
        pixels = np.roll(base, i % 64, axis=i // 64 % 2)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=85)
    return time.perf_counter() - start


async def first_image(args: list[str]) -> tuple[float, float]:
    """Seconds from now until the workspace is open, and until the first analysed image is on the screen."""
    start = time.perf_counter()
    workspace = workspace_from_args(build_parser(None).parse_args(args))
    opened = time.perf_counter() - start
    app = SemiotuiApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        while True:
            views = app.screen.query(SaliencyView)
            content = views.first().content if views else None
            caption = content.caption.plain if content is not None else ""
            if "H = " in caption or "H: none" in caption:
                break
            assert time.perf_counter() - start < 120, "no image analysed in 2 minutes"
            await pilot.pause(0.01)
        shown = time.perf_counter() - start
    app.session.close()  # as `semiotui` does on quitting: the analysis stops after its current batch
    return opened, shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        written = write_jpegs(folder, options.images)
        load = os.getloadavg()[0]
        before = time.perf_counter()
        opened, shown = asyncio.run(first_image(["--images", str(folder), "--device", "cpu"]))
        since_start = before - STARTED + shown - written
        start = time.perf_counter()
        for path in sorted(folder.iterdir()):
            data._open(path)
        decode_all = time.perf_counter() - start
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"load {load:.2f} before opening")
    print(f"{options.images} JPEGs of 64x64 ({written:.1f} s to write)")
    print(f"workspace open (files listed, first image read): {opened:8.2f} s")
    print(f"first analysed image on the screen:              {shown:8.2f} s after opening")
    print(f"                                                 {since_start:8.2f} s after the process started")
    print(f"decoding every file once, one thread (what a check before the first screen cost): {decode_all:.2f} s")


if __name__ == "__main__":
    main()
