"""Weights in safetensors files: one file, or shards listed by an index file (`model.safetensors.index.json`).

A safetensors file is a JSON header and raw tensor bytes: reading it runs no code.
It is recognised by its header (an 8-byte little-endian length, then a JSON
object), whatever its name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .errors import LoadError, one_line
from .names import shown

MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library's own limit
MAX_INDEX_BYTES = 64 * 2**20  # an index lists tensor names: megabytes at most for the largest models
_SHARD = re.compile(r"-(\d+)-of-(\d+)\.safetensors$")


def is_safetensors(head: bytes) -> bool:
    """Whether a file's first bytes are a safetensors header's: its length (up to the format's 100 MB), then a
    JSON object. A file cut short still is one: reading it says it is damaged."""
    length = int.from_bytes(head[:8], "little")
    return len(head) > 9 and 2 <= length <= MAX_HEADER_BYTES and head[8:10] in (b'{"', b"{}")


def is_index(head: bytes) -> bool:
    """Whether a text file's first bytes look like a sharded checkpoint's index (a JSON object with a weight_map)."""
    return head.lstrip().startswith(b"{") and b'"weight_map"' in head


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file, on the CPU."""
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as exc:  # the library reports a bad header or cut data as its own SafetensorError
        raise LoadError(f"{path} is a damaged safetensors file ({one_line(exc, short=True)}); copy or save it again") \
            from exc


def read_sharded(index: Path) -> dict[str, torch.Tensor]:
    """The tensors of every shard an index file lists (each a safetensors file in the index's folder)."""
    weight_map = _weight_map(index)
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        file = index.parent / shard
        if not file.is_file():
            raise LoadError(f"{index} lists the shard {shown(shard)}, which is not beside it; copy every shard "
                            "into the index's folder")
        state.update(read_tensors(file))
    missing = [name for name in weight_map if name not in state]
    if missing:
        raise LoadError(f"{index} lists {len(missing)} tensors its shards do not hold ({shown(missing[0])}, ...); "
                        "the shards are from another save: copy them again")
    return state


def index_beside(shard: Path) -> Path | None:
    """The index of the sharded checkpoint `shard` (model-00001-of-00003.safetensors) is one of, if beside it."""
    found = _SHARD.search(shard.name)
    if found is None:
        return None
    stem = shard.name[:found.start()]
    index = shard.with_name(f"{stem}.safetensors.index.json")
    return index if index.is_file() else None


def _weight_map(index: Path) -> dict[str, str]:
    """The index's weight_map (tensor name to shard file); a shard must be a file name in the index's folder."""
    try:
        if index.stat().st_size > MAX_INDEX_BYTES:
            raise ValueError(f"over {MAX_INDEX_BYTES // 2**20} MB, more than any index")
        data = json.loads(index.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError("its weight_map is not a non-empty object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LoadError(f"{index} is not a valid safetensors index ({one_line(exc, short=True)}); "
                        "pass the model.safetensors.index.json saved with the shards") from exc
    for shard in weight_map.values():
        if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
            raise LoadError(f"{index} names the shard {shown(str(shard))}, not a file name beside it; "
                            "semiotui reads shards only from the index's own folder")
    return weight_map
