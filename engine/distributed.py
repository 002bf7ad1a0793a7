"""Sharded analysis under PyTorch's own distributed runtime (`torchrun`).

Each rank analyses a contiguous block of the image files on its own device,
checking each file as it reads it (a file is decoded once, by the rank that
analyses it); rank 0 gathers the per-image rows and the skipped files in order,
so the result is the one a single process gives on the same files. A rank that
fails tells the others through the same collective, and rank 0 reports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist

from .analysis import AnalysisResult
from .stats import RunningStats


@dataclass(frozen=True)
class Shard:
    rank: int
    world: int
    local_rank: int

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def indices(self, count: int) -> range:
        """This rank's contiguous block of `count` images."""
        return range(self.rank * count // self.world, (self.rank + 1) * count // self.world)


def current_shard() -> Shard | None:
    """The shard torchrun gave this process (its RANK, WORLD_SIZE, LOCAL_RANK), or None alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Shard(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(shard: Shard, device: str) -> str:
    """Join the process group (nccl on GPUs, gloo on CPUs); returns the device this rank uses."""
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if cuda:
        torch.cuda.set_device(shard.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        return f"cuda:{shard.local_rank}"
    return "cpu" if device == "auto" else device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def gather(shard: Shard, result: AnalysisResult | None, error: str | None) -> AnalysisResult | None:
    """On rank 0, the whole dataset's result from every rank's part; None elsewhere.

    Raises RuntimeError on every rank when some rank failed, naming it on rank 0.
    """
    parts: list[tuple[AnalysisResult | None, str | None]] = [None] * shard.world  # type: ignore[list-item]
    dist.all_gather_object(parts, (result, error))
    failed = [(rank, err) for rank, (_, err) in enumerate(parts) if err is not None]
    if failed:
        rank, err = failed[0]
        raise RuntimeError(f"rank {rank} of {shard.world} failed: {err}")
    if not shard.leader:
        return None
    results = [r for r, _ in parts if r is not None]
    shaped = [r for r in results if r.images] or results  # a rank with no images knows no layer names
    whole = replace(shaped[0], images=[], stats=RunningStats(), device=_devices(results), skipped=[],
                    total=None)
    for part in results:
        whole.images.extend(part.images)
        whole.skipped.extend(part.skipped)
        whole.stats.merge(part.stats)
        whole.cancelled = whole.cancelled or part.cancelled
        whole.seconds = max(whole.seconds, part.seconds)
    whole.images.sort(key=lambda r: r.index)
    return whole


def _devices(results: list[AnalysisResult]) -> str:
    backend = dist.get_backend()
    return f"{len(results)} processes ({backend}): " + ", ".join(r.device for r in results)
