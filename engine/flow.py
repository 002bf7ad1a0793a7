"""Which measured layer feeds which, and the main path the superization steps follow (semiotui/docs/METHOD.md §3).

A step compares a layer with the layer whose output it consumes, never two
parallel branches (a residual branch against its shortcut). The inputs of each
layer are read from the autograd graph of one forward pass: walking back from
what a layer returned, the first measured outputs met are the ones it consumes.
Where the network branches, the steps run along the main path: the longest
chain of measured layers from the input to the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Flow:
    """The measured layers (map names, forward order), what each consumes, and the main path.

    `parents[i]` is the layer the step into layer `i` comes from: its
    predecessor on the main path; None for the first layer of the path and for
    layers off it (branches), which have no step.
    """

    layers: list[str]
    inputs: list[tuple[int, ...]]  # nearest measured layers each layer's output depends on
    parents: list[int | None]
    main: list[bool]  # on the main path

    @property
    def branches(self) -> list[str]:
        """Layers off the main path."""
        return [name for name, main in zip(self.layers, self.main) if not main]

    @classmethod
    def chain(cls, layers: Sequence[str]) -> Flow:
        """A plain sequence: each layer consumes the one before it."""
        n = len(layers)
        return cls(list(layers), [(i - 1,) if i else () for i in range(n)], [i - 1 if i else None for i in range(n)],
                   [True] * n)

    @classmethod
    def from_inputs(cls, layers: Sequence[str], inputs: Sequence[Sequence[int]]) -> Flow:
        """The main path through `inputs` (each entry earlier in `layers`): the longest chain, later layers on ties."""
        n = len(layers)
        length = [1] * n
        best: list[int | None] = [None] * n
        for i, came_from in enumerate(inputs):
            for j in sorted(came_from):  # on equal lengths the later input wins
                if length[j] + 1 >= length[i]:
                    length[i], best[i] = length[j] + 1, j
        parents: list[int | None] = [None] * n
        main = [False] * n
        if n:
            end: int | None = max(range(n), key=lambda i: (length[i], i))
            while end is not None:
                main[end], parents[end] = True, best[end]
                end = best[end]
        return cls(list(layers), [tuple(sorted(set(c))) for c in inputs], parents, main)


def trace_inputs(returned: Sequence[torch.Tensor], passed_on: Sequence[torch.Tensor]) -> list[tuple[int, ...]]:
    """For each measured output, the positions of the measured outputs it was computed from, nearest only.

    `returned[i]` is what layer `i` returned and `passed_on[i]` what the network
    received in its place (a copy, so later in-place operations leave the
    recorded output alone); both must carry autograd history.
    """
    owner = {t.grad_fn: i for i, t in enumerate(passed_on) if t.grad_fn is not None}
    out = []
    for i, tensor in enumerate(returned):
        found: set[int] = set()
        start = tensor.grad_fn
        stack = [start] if start is not None else []
        seen = set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            j = owner.get(node)
            if j is not None and j != i:
                found.add(j)  # a measured output: stop here, what fed it belongs to that layer
                continue
            stack.extend(child for child, _ in node.next_functions if child is not None)
        out.append(tuple(sorted(found)))
    return out
