"""Retrain the bundled demo model reproducibly on the CPU and write `engine/weights/demo.pt`.

Trains DemoNet on `demo_samples("train", ...)`, each batch turned by a random rotation
of 90 degrees and flip (every class is closed under both), then reports the accuracy on
the held-out validation split that tests/test_demo.py checks. One thread, fixed seeds and
deterministic algorithms: a rerun on the same machine writes the same weights.
Usage: python scripts/train_demo.py [--images N] [--epochs N] [--out PATH]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from semiotui.engine.demo import CLASSES, DemoNet, demo_samples, preprocess

WEIGHTS = Path(__file__).resolve().parent.parent / "engine" / "weights" / "demo.pt"


def tensors(split: str, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as one batch of preprocessed images and their labels."""
    samples = demo_samples(split, count, seed=seed)
    images = torch.stack([preprocess(image) for image, _ in samples])
    return images, torch.tensor([label for _, label in samples])


@torch.no_grad()
def accuracy(model: DemoNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of the model in eval mode."""
    model.eval()
    predicted = torch.cat([model(batch).argmax(1) for batch in images.split(256)])
    return (predicted == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8000, help="training images (default 8000)")
    parser.add_argument("--epochs", type=int, default=6, help="passes over them (default 6)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=WEIGHTS, help=f"weights file (default {WEIGHTS})")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    shuffle = torch.Generator().manual_seed(0)
    start = time.perf_counter()

    images, labels = tensors("train", args.images, seed=0)
    val_images, val_labels = tensors("val", 300, seed=0)
    print(f"{args.images} training images in {time.perf_counter() - start:.0f} s; normalised per-channel "
          f"mean {images.mean((0, 2, 3)).numpy().round(3)}, std {images.std((0, 2, 3)).numpy().round(3)} "
          "(near 0 and 1 when INPUT_SPEC fits the data)", flush=True)

    model = DemoNet()
    batches = args.images // args.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=3e-3, total_steps=args.epochs * batches, pct_start=0.15)
    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        order = torch.randperm(args.images, generator=shuffle)[: batches * args.batch_size]
        for batch in order.split(args.batch_size):
            turns = torch.randint(4, (1,), generator=shuffle).item()
            flip = torch.randint(2, (1,), generator=shuffle).item()
            x = torch.rot90(images[batch], turns, (2, 3))
            loss = F.cross_entropy(model(x.flip(3) if flip else x), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / batches:.4f}, "
              f"val accuracy {accuracy(model, val_images, val_labels):.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    check_images, check_labels = tensors("val", 2400, seed=1)
    print(f"held-out accuracy {accuracy(model, val_images, val_labels):.4f} on val (300, seed 0), "
          f"{accuracy(model, check_images, check_labels):.4f} on val (2400, seed 1); "
          f"{len(CLASSES)} classes, {sum(p.numel() for p in model.parameters())} parameters")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    torch.save(model.state_dict(), partial)
    partial.replace(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
