"""Spatial entropy of saliency maps (semiotui/docs/METHOD.md §2), batched on the maps' own device."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

from .errors import InvalidValue
from .saliency import upsample_map

Estimator = Literal["arrangement", "aura", "histogram", "location"]
ESTIMATORS: tuple[str, ...] = ("arrangement", "aura", "histogram", "location")

# The arrangement estimator compares a map with its own pixels in this many random orders
# (semiotui/docs/METHOD.md §2.1).
PERMUTATIONS = 4
# A map with fewer pixels above its lowest grey level than this holds no arrangement: it counts as empty.
MIN_SUPPORT = 2

# The aura matrix has levels² cells, counted per map (int64): 4096 levels take 128 MiB, 46341 took 24 GB.
MAX_LEVELS = 4096

# Above this many histogram bins per chunk the batch is counted in pieces,
# so memory stays bounded for large batches at high grey-level counts.
_MAX_BINS_PER_CHUNK = 1 << 24
# On the CPU, a chunk's maps (as float64) fill about this much, and its counts at most
# this many bins (8 maps at 256 levels): they stay in cache, which measured 1.4x faster
# than one pass over 212 maps of 224x224, and 2.2x over 288 maps of 64x64.
_CPU_CHUNK_BYTES = 4 << 20
_CPU_BINS_PER_CHUNK = 1 << 19
_CPU_THREADS = 4  # chunks measured at once (`torch.bincount` counts on one thread)
# Bytes measuring one map takes per pixel it is measured at (its copies, grey levels, pairs and their order),
# as measured on the CPU at 1024x1024 and 2048x2048; and what a chunk may take on any device, so that maps
# measured at a large input size are measured a few at a time on a GPU too.
_BYTES_PER_PIXEL = {"arrangement": 180, "aura": 100, "histogram": 32, "location": 32}
_MAX_CHUNK_BYTES = 1 << 30


def spatial_entropy(
    maps: torch.Tensor | np.ndarray,
    *,
    levels: int = 256,
    normalized: bool = False,
    estimator: Estimator = "aura",
    size: Sequence[int] | None = None,
) -> torch.Tensor:
    """Entropy in bits of each map of `maps` (`(H, W)` or `(B, H, W)`).

    `aura` (default here: the paper's estimator) is the entropy of the
    4-neighbour grey-level co-occurrence (aura) matrix; `arrangement` the aura
    entropy less that of the same pixels in random orders (semiotui/docs/METHOD.md
    §2.1); `histogram` the Shannon entropy of the grey levels; `location` the
    entropy of `|S| / sum|S|` over pixel positions. `size`: measure the maps
    bilinearly upsampled to this `(H, W)`. Returns shape `()` or `(B,)`.
    """
    x = torch.as_tensor(maps)
    single = x.dim() == 2
    bits, _ = measure_maps(x.unsqueeze(0) if single else x, levels=levels, normalized=normalized,
                           estimator=estimator, size=size)
    return bits[0] if single else bits


def measure_maps(
    maps: torch.Tensor,
    *,
    levels: int = 256,
    normalized: bool = False,
    estimator: Estimator = "aura",
    size: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`spatial_entropy` of `(B, h, w)` maps at their native resolution, and which of them are empty, in one pass.

    `size` is the `(H, W)` each map is measured at, bilinearly upsampled
    (`align_corners=False`); None measures it as it is. A map is empty when it
    holds no arrangement: constant (all zero after Grad-CAM's ReLU, say), or
    with fewer than `MIN_SUPPORT` pixels above its lowest grey level (a single
    speck), judged at the native resolution. The estimators give a constant map
    0 bits (semiotui/docs/METHOD.md §2).

    On the CPU the maps are measured a few at a time, so each one's counts stay
    in cache, on as many threads as torch uses (counting is single-threaded).
    """
    x = torch.as_tensor(maps)
    if x.dim() != 3:
        raise ValueError(f"maps must have shape (H, W) or (B, H, W), got {tuple(x.shape)}")
    check_levels(levels)
    if estimator not in ESTIMATORS:
        raise InvalidValue(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    b, h, w = x.shape
    out_h, out_w = (h, w) if size is None else (int(size[0]), int(size[1]))
    dtype = _float_dtype(x.device)
    if b == 0 or h * w == 0:
        bits = torch.zeros(b, dtype=dtype, device=x.device)
        return bits, torch.ones(b, dtype=torch.bool, device=x.device)
    table = _c_ln_c(_cells_per_map(out_h, out_w, estimator), x.device) if estimator != "location" else None
    copies = _copies(estimator)
    orders = _permutations(h, w, PERMUTATIONS, x.device) if estimator == "arrangement" else None

    def measure(part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        part = part.to(dtype)
        flat = part.flatten(1)
        lo, hi = flat.amin(dim=1), flat.amax(dim=1)  # NaN and inf show in a map's min or max (aminmax: 5x slower)
        if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):
            raise InvalidValue("maps contain NaN or infinite values; their entropy is undefined")
        empty = _empty(flat, lo, hi, levels)
        if orders is not None:  # the map, then its pixels in each random order
            n = len(part)
            part = torch.cat([part, flat[:, orders].transpose(0, 1).reshape(-1, h, w)])
        if (out_h, out_w) != (h, w):
            part = upsample_map(part, (out_h, out_w))
        if estimator == "location":
            part_bits = _location_entropy(part)
        else:
            part_lo, part_hi = (lo, hi) if copies == 1 and (out_h, out_w) == (h, w) else (
                part.flatten(1).amin(dim=1), part.flatten(1).amax(dim=1))
            q = _quantize(part, part_lo, part_hi, levels)
            part_bits = _histogram_entropy(q, levels, table) if estimator == "histogram" else _aura_entropy(q, levels, table)
        if orders is not None:  # the entropy the arrangement saves: below that of the same values in random orders
            part_bits = part_bits[:n] - part_bits[n:].view(PERMUTATIONS, n).mean(dim=0)
        return part_bits, empty

    parts = torch.split(x, _chunk(out_h, out_w, levels, estimator, x.device))
    threads = _threads(x.device)
    if len(parts) > 1 and threads > 1:
        with ThreadPoolExecutor(min(threads, len(parts))) as pool:  # torch releases the GIL in each op
            measured = list(pool.map(measure, parts))
    else:
        measured = [measure(part) for part in parts]
    bits = torch.cat([m[0] for m in measured])
    empty = torch.cat([m[1] for m in measured])
    if normalized:
        bits = bits / max_entropy(out_h, out_w, levels=levels, estimator=estimator)
    return bits, empty


def measuring_bytes(size: Sequence[int], *, levels: int, estimator: Estimator, device: torch.device) -> int:
    """The most memory `measure_maps` takes at once for maps measured at `size` (H, W), however many: its
    chunks in flight."""
    h, w = size
    return _threads(device) * _chunk(h, w, levels, estimator, device) * h * w * _BYTES_PER_PIXEL[estimator]


def _chunk(height: int, width: int, levels: int, estimator: Estimator, device: torch.device) -> int:
    """How many maps measured at `height` x `width` `measure_maps` takes in one piece."""
    copies = _copies(estimator)
    bins = levels if estimator == "histogram" else levels * levels
    pixels = height * width
    chunk = min(_MAX_BINS_PER_CHUNK // (bins * copies), _MAX_CHUNK_BYTES // (pixels * _BYTES_PER_PIXEL[estimator]))
    if device.type == "cpu":
        chunk = min(chunk, _CPU_CHUNK_BYTES // (copies * pixels * torch.finfo(_float_dtype(device)).bits // 8))
        if not (estimator in ("aura", "arrangement") and _counted_by_sorting(height, width, levels, device)):
            chunk = min(chunk, _CPU_BINS_PER_CHUNK // (bins * copies))
    return max(1, chunk)


def _copies(estimator: Estimator) -> int:
    """Maps measured per input map: the arrangement estimator's in its random orders too."""
    return 1 + PERMUTATIONS if estimator == "arrangement" else 1


def _threads(device: torch.device) -> int:
    """Chunks measured at once: at most 4 on the CPU (each op a thread runs may start its own team of torch's
    threads, OpenMP), one on a GPU."""
    return min(torch.get_num_threads(), _CPU_THREADS) if device.type == "cpu" else 1


def check_levels(levels: int) -> None:
    """Raise ValueError for a number of grey levels the estimators cannot count in bounded memory."""
    if not 2 <= levels <= MAX_LEVELS:
        raise InvalidValue(f"levels must be from 2 to {MAX_LEVELS} (the co-occurrence matrix has levels² cells), "
                           f"got {levels}")


def entropy_range(*, levels: int = 256, normalized: bool = False, estimator: Estimator = "aura") -> tuple[float, float]:
    """The values an estimator's entropy can take, whatever the map's size (the location one has no size-free bound)."""
    if estimator == "arrangement":  # a difference of two aura entropies
        return (-1.0, 1.0) if normalized else (-2 * math.log2(levels), 2 * math.log2(levels))
    if normalized:
        return 0.0, 1.0
    top = {"aura": 2 * math.log2(levels), "histogram": math.log2(levels)}.get(estimator, math.inf)
    return 0.0, top


def max_entropy(height: int, width: int, *, levels: int = 256, estimator: Estimator = "aura") -> float:
    """The bound an estimator's entropy is divided by when `normalized=True` (1.0 if none)."""
    if estimator in ("aura", "arrangement"):
        outcomes = min(levels * levels, 2 * (height * (width - 1) + (height - 1) * width))
    elif estimator == "histogram":
        outcomes = min(levels, height * width)
    else:
        outcomes = height * width
    return math.log2(outcomes) if outcomes > 1 else 1.0


def _constant(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Maps whose range is at most 1e-12 of their scale."""
    return (hi - lo) <= 1e-12 * torch.clamp(hi.abs(), min=1.0)


def _empty(flat: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, levels: int) -> torch.Tensor:
    """Constant maps, and maps with fewer than MIN_SUPPORT pixels above their lowest grey level (specks)."""
    constant = _constant(lo, hi)
    span = torch.where(constant, torch.ones_like(hi), hi - lo)
    # A pixel quantises above level 0 when its normalised value u reaches 0.5 / (levels - 1).
    support = ((flat - lo[:, None]) >= (0.5 / (levels - 1)) * span[:, None]).sum(dim=1)
    return constant | (support < MIN_SUPPORT)


@lru_cache(maxsize=64)
def _permutations(height: int, width: int, count: int, device: torch.device) -> torch.Tensor:
    """`count` fixed random orders of a map's `height * width` pixels, (count, pixels) long.

    Seeded by the size alone, so a map's arrangement entropy does not depend on
    the batch it came in, its position there, the shard or the device.
    """
    generator = torch.Generator().manual_seed(height * 100_003 + width)
    return torch.stack([torch.randperm(height * width, generator=generator) for _ in range(count)]).to(device)


def _quantize(maps: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, levels: int) -> torch.Tensor:
    """Min-max normalise each map (its `lo` and `hi`) and round it to `levels` grey levels (int32, `(B, H, W)`).

    A constant map (range at most 1e-12 of its scale) quantises to all zeros.
    """
    span = hi - lo
    constant = _constant(lo, hi)
    span = torch.where(constant, torch.ones_like(span), span)
    u = (maps - lo[:, None, None]).div_(span[:, None, None])
    q = u.mul_(levels - 1).add_(0.5).floor_().clamp_(0, levels - 1).int()
    return q.masked_fill_(constant[:, None, None], 0) if bool(constant.any()) else q


def _aura_entropy(q: torch.Tensor, levels: int, table: torch.Tensor) -> torch.Tensor:
    """Entropy of the symmetric 4-neighbour co-occurrence counts of quantised maps."""
    b, h, w = q.shape
    pairs = h * (w - 1) + (h - 1) * w
    if pairs == 0:
        return torch.zeros(b, dtype=_float_dtype(q.device), device=q.device)
    # The aura matrix counts each neighbour pair both ways, so it is symmetric: count
    # each unordered pair once, under its key min * levels + max (the upper triangle).
    # int32 keys: below 2**24 per chunk (see _MAX_BINS_PER_CHUNK).
    keys = torch.empty(b, pairs, dtype=q.dtype, device=q.device)
    for (a, c), out in (((q[:, :, :-1], q[:, :, 1:]), keys[:, : h * (w - 1)]),
                        ((q[:, :-1, :], q[:, 1:, :]), keys[:, h * (w - 1) :])):
        torch.add(torch.maximum(a, c), torch.minimum(a, c), alpha=levels, out=out.view_as(a))
    if _counted_by_sorting(h, w, levels, q.device):
        return _entropy_of_sorted_codes(keys, levels * levels, table, symmetric=levels)
    return _entropy_of_codes(keys, levels * levels, table, symmetric=levels)


def _counted_by_sorting(height: int, width: int, levels: int, device: torch.device) -> bool:
    """Whether a map's co-occurrences are counted by sorting its pairs rather than into levels² bins.

    On the CPU, sorting wins where a map has 16 times fewer pairs than the matrix has
    cells (up to 45x45 at 256 levels): 2.5x faster at 32x32, 3x at 28x28; from 48x48 the
    bins win (`benchmarks/entropy.py`). Not measured on GPUs.
    """
    return device.type == "cpu" and 16 * (height * (width - 1) + (height - 1) * width) <= levels * levels


def _histogram_entropy(q: torch.Tensor, levels: int, table: torch.Tensor) -> torch.Tensor:
    return _entropy_of_codes(q.flatten(1), levels, table)


def _cells_per_map(height: int, width: int, estimator: str) -> int:
    """How many counts one map's distribution sums to: ordered neighbour pairs, or pixels."""
    if estimator in ("aura", "arrangement"):
        return 2 * (height * (width - 1) + (height - 1) * width)
    return height * width


def _c_ln_c(total: int, device: torch.device) -> torch.Tensor:
    """`c ln c` for every count c a cell can hold, 0 to `total`.

    H = (N ln N - sum_cells c ln c) / (N ln 2): looking `c ln c` up is a gather per
    bin instead of a logarithm, and N ln N from the same table gives a map with one
    cell exactly 0 bits.
    """
    counts = torch.arange(total + 1, device=device, dtype=_float_dtype(device))
    return counts * torch.log(counts.clamp(min=1))


def _entropy_of_codes(codes: torch.Tensor, bins: int, c_ln_c: torch.Tensor, *,
                      symmetric: int | None = None) -> torch.Tensor:
    """Shannon entropy (bits) of each row's distribution of integer codes in [0, bins).

    With `symmetric=n`, each code is an unordered pair (upper triangle of an n x n
    matrix) that the distribution counts both ways: off the diagonal as two cells
    of the pair's count, on it as one cell of twice the count. `c_ln_c` is
    `_c_ln_c` of the distribution's total.
    """
    n, per_row = codes.shape
    total = per_row * (2 if symmetric else 1)
    offsets = torch.arange(n, device=codes.device, dtype=codes.dtype)[:, None] * bins
    counts = torch.bincount((codes + offsets).flatten(), minlength=n * bins).view(n, bins)
    if symmetric is None:
        cells = torch.take(c_ln_c, counts).sum(dim=1)  # take: half the time of indexing
    else:
        diagonal = counts.view(n, symmetric, symmetric).diagonal(dim1=1, dim2=2)
        on_diagonal = torch.take(c_ln_c, 2 * diagonal).sum(dim=1)
        diagonal.zero_()  # a view: leaves the off-diagonal counts
        cells = 2 * torch.take(c_ln_c, counts).sum(dim=1) + on_diagonal
    bits = (c_ln_c[total] - cells) / (total * math.log(2))
    return bits.clamp_(min=0)  # rounding may leave -1e-16 where the answer is 0


def _entropy_of_sorted_codes(codes: torch.Tensor, bins: int, c_ln_c: torch.Tensor, *,
                             symmetric: int | None = None) -> torch.Tensor:
    """`_entropy_of_codes`, counting each row's codes by sorting them: only the cells a row uses are visited."""
    n, per_row = codes.shape
    total = per_row * (2 if symmetric else 1)
    rows = torch.arange(n, device=codes.device)[:, None] * bins
    flat = (codes.sort(dim=1).values.long() + rows).flatten()  # (row, code), each row's run of equal codes together
    first = torch.ones_like(flat, dtype=torch.bool)
    first[1:] = flat[1:] != flat[:-1]
    counts = torch.bincount(torch.cumsum(first, 0) - 1)  # the length of each run: a cell's count
    cells = flat[first]
    if symmetric is None:
        weight = torch.take(c_ln_c, counts)
    else:  # key min * n + max is on the diagonal when it is a multiple of n + 1
        diagonal = (cells % bins) % (symmetric + 1) == 0
        weight = torch.where(diagonal, torch.take(c_ln_c, 2 * counts), 2 * torch.take(c_ln_c, counts))
    summed = torch.zeros(n, dtype=c_ln_c.dtype, device=codes.device).index_add_(0, cells // bins, weight)
    bits = (c_ln_c[total] - summed) / (total * math.log(2))
    return bits.clamp_(min=0)  # rounding may leave -1e-16 where the answer is 0


def _location_entropy(x: torch.Tensor) -> torch.Tensor:
    mass = x.abs().flatten(1)
    total = mass.sum(dim=1, keepdim=True)
    p = mass / torch.where(total > 0, total, torch.ones_like(total))
    return -(torch.special.xlogy(p, p)).sum(dim=1) / math.log(2)


def _float_dtype(device: torch.device) -> torch.dtype:
    # Float64 keeps the reference vectors to 1e-6; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64
