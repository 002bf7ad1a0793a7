"""Sharded analysis under PyTorch's own distributed runtime (`torchrun`).

The ranks split the checking of the image files between them (each file is
decoded once to check it) and share the outcome, so every rank sees the same
images. Each rank analyses a contiguous block of them on its own device; rank 0
gathers the per-image rows in order, so the result is the one a single process
gives on the same images. A rank that fails tells the others through the same
collective, and rank 0 reports it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist

from .analysis import AnalysisResult
from .data import Reasons, sharing_file_checks
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


@contextmanager
def shared_file_checks(shard: Shard) -> Iterator[None]:
    """Within it, image sources split the checking of their files between the ranks.

    Every file is decoded once to check it; alone, each rank would decode all of
    them before analysing its block. Here each rank checks a contiguous block
    and all of them receive every reason, so each builds the same source.
    """

    def share(check: Callable[[list[Path]], Reasons], files: list[Path]) -> Reasons:
        block = shard.indices(len(files))
        parts: list[Reasons] = [[] for _ in range(shard.world)]
        dist.all_gather_object(parts, check(files[block.start : block.stop]))
        return [reason for part in parts for reason in part]

    with sharing_file_checks(share):
        yield


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
    whole = replace(shaped[0], images=[], stats=RunningStats(), device=_devices(results))
    for part in results:
        whole.images.extend(part.images)
        whole.stats.merge(part.stats)
        whole.cancelled = whole.cancelled or part.cancelled
        whole.seconds = max(whole.seconds, part.seconds)
    whole.images.sort(key=lambda r: r.index)
    return whole


def _devices(results: list[AnalysisResult]) -> str:
    backend = dist.get_backend()
    return f"{len(results)} processes ({backend}): " + ", ".join(r.device for r in results)
