"""Choosing the device the analysis runs on, and how much memory it has left."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import InvalidValue

# Raised when a device runs out of memory: torch.OutOfMemoryError (any device) only exists in recent
# PyTorch; older releases raise CUDA's, which is now the same class under its older name.
OUT_OF_MEMORY: type[Exception] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; any other name is checked."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InvalidValue(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidValue(f"`device` {name!r} asked for, but CUDA is not available here; use `device` cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InvalidValue(f"`device` {name!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidValue("`device` 'mps' asked for, but MPS is not available here; use `device` cpu")
    return device


def describe_device(device: torch.device) -> str:
    """A short human name, e.g. 'cuda:0 (NVIDIA H100, 80 GiB)' or 'cpu (2 threads)'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"cuda:{index} ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def available_memory(device: torch.device) -> int | None:
    """Bytes an analysis can still take on `device`, or None where that cannot be known (Apple MPS, a system
    without /proc).

    A GPU's free memory and what torch holds cached on it; on the CPU the memory Linux says is available
    (MemAvailable), within a container's limit (cgroup v2 or v1) where there is one.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    for limit, used in _CGROUP_MEMORY:
        try:
            left = int(Path(limit).read_text()) - int(Path(used).read_text())
        except (OSError, ValueError):  # absent, or "max": no limit there
            continue
        return min(available, left)
    return available


# A container's memory limit and use: cgroup v2, then v1 (whose "no limit" is a number larger than any memory).
_CGROUP_MEMORY = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                  ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))
