"""Spatial entropy of saliency maps (METHOD.md §2), batched on the maps' own device."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

Estimator = Literal["aura", "histogram", "location"]
ESTIMATORS: tuple[str, ...] = ("aura", "histogram", "location")

# Above this many histogram bins per chunk the batch is counted in pieces,
# so memory stays bounded for large batches at high grey-level counts.
_MAX_BINS_PER_CHUNK = 1 << 24


def spatial_entropy(
    maps: torch.Tensor | np.ndarray,
    *,
    levels: int = 256,
    normalized: bool = False,
    estimator: Estimator = "aura",
) -> torch.Tensor:
    """Entropy in bits of each map of `maps` (`(H, W)` or `(B, H, W)`).

    `aura` (default) is the entropy of the 4-neighbour grey-level co-occurrence
    (aura) matrix; `histogram` the Shannon entropy of the grey levels; `location`
    the entropy of `|S| / sum|S|` over pixel positions. Returns shape `()` or `(B,)`.
    """
    x = torch.as_tensor(maps)
    single = x.dim() == 2
    if single:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise ValueError(f"maps must have shape (H, W) or (B, H, W), got {tuple(x.shape)}")
    if levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    x = x.to(_float_dtype(x.device))
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError("maps contain NaN or infinite values; their entropy is undefined")

    if x.shape[0] == 0 or x.shape[1] * x.shape[2] == 0:
        bits = x.new_zeros(x.shape[0])
    elif estimator == "location":
        bits = _location_entropy(x)
    else:
        q = quantize(x, levels)
        bits = _aura_entropy(q, levels) if estimator == "aura" else _histogram_entropy(q, levels)
    if normalized:
        bits = bits / max_entropy(x.shape[1], x.shape[2], levels=levels, estimator=estimator)
    return bits[0] if single else bits


def max_entropy(height: int, width: int, *, levels: int = 256, estimator: Estimator = "aura") -> float:
    """The bound an estimator's entropy is divided by when `normalized=True` (1.0 if none)."""
    if estimator == "aura":
        outcomes = min(levels * levels, 2 * (height * (width - 1) + (height - 1) * width))
    elif estimator == "histogram":
        outcomes = min(levels, height * width)
    else:
        outcomes = height * width
    return math.log2(outcomes) if outcomes > 1 else 1.0


def quantize(maps: torch.Tensor, levels: int) -> torch.Tensor:
    """Min-max normalise each map and round it to `levels` grey levels (long, `(B, H, W)`).

    A constant map (range at most 1e-12 of its scale) quantises to all zeros.
    """
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values
    hi = flat.max(dim=1).values
    span = hi - lo
    constant = span <= 1e-12 * torch.clamp(hi.abs(), min=1.0)
    span = torch.where(constant, torch.ones_like(span), span)
    u = (maps - lo[:, None, None]) / span[:, None, None]
    q = torch.floor(u * (levels - 1) + 0.5).clamp_(0, levels - 1).long()
    return q.masked_fill_(constant[:, None, None], 0)


def _aura_entropy(q: torch.Tensor, levels: int) -> torch.Tensor:
    """Entropy of the symmetric 4-neighbour co-occurrence counts of quantised maps."""
    b, h, w = q.shape
    pairs = 2 * (h * (w - 1) + (h - 1) * w)
    if pairs == 0:
        return torch.zeros(b, dtype=_float_dtype(q.device), device=q.device)
    # Each unordered neighbour pair is counted once as (s, r); adding the transposed
    # counts then counts it both ways, with half the keys to sort into bins.
    q = q.int()  # codes stay below 2**24 per chunk (see _MAX_BINS_PER_CHUNK)
    keys = torch.cat([(q[:, :, :-1] * levels + q[:, :, 1:]).flatten(1),
                      (q[:, :-1, :] * levels + q[:, 1:, :]).flatten(1)], dim=1)
    return _entropy_of_codes(keys, levels * levels, pairs, square=levels)


def _histogram_entropy(q: torch.Tensor, levels: int) -> torch.Tensor:
    return _entropy_of_codes(q.flatten(1), levels, q.shape[1] * q.shape[2])


def _entropy_of_codes(codes: torch.Tensor, bins: int, total: int, *, square: int | None = None) -> torch.Tensor:
    """Shannon entropy (bits) of each row's distribution of integer codes in [0, bins).

    With `square`, the codes index a square matrix whose transpose is added to it.
    """
    b = codes.shape[0]
    chunk = max(1, _MAX_BINS_PER_CHUNK // bins)
    out = []
    for start in range(0, b, chunk):
        part = codes[start : start + chunk]
        n = part.shape[0]
        offsets = torch.arange(n, device=part.device, dtype=part.dtype)[:, None] * bins
        counts = torch.bincount((part + offsets).flatten(), minlength=n * bins).view(n, bins)
        if square is not None:
            counts = counts.view(n, square, square)
            counts = (counts + counts.transpose(1, 2)).view(n, bins)
        # H = sum c (ln N - ln c) / (N ln 2): exact 0 for one full bin, and an empty bin
        # adds 0 * (ln N - ln 1); cheaper than xlogy on the CPU
        c = counts.to(_float_dtype(part.device))
        bits = (c * (math.log(total) - torch.log(c.clamp(min=1)))).sum(dim=1) / (total * math.log(2))
        out.append(bits.clamp_(min=0))  # math.log and torch.log may differ by an ulp: never -0.0 bits
    return torch.cat(out)


def _location_entropy(x: torch.Tensor) -> torch.Tensor:
    mass = x.abs().flatten(1)
    total = mass.sum(dim=1, keepdim=True)
    p = mass / torch.where(total > 0, total, torch.ones_like(total))
    return -(torch.special.xlogy(p, p)).sum(dim=1) / math.log(2)


def _float_dtype(device: torch.device) -> torch.dtype:
    # Float64 keeps the reference vectors to 1e-6; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64
