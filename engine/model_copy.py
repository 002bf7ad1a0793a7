"""An independent copy of a model, including a program loaded from a torch.export archive."""

from __future__ import annotations

import copy

import torch
from torch import nn


def copy_model(model: nn.Module) -> nn.Module:
    """`copy.deepcopy(model)`, sharing the metadata of any fx graph inside it.

    An unflattened torch.export program keeps, on each graph node, fake tensors
    whose sizes may be symbolic (a dynamic batch); those cannot be copied
    ("Cannot call numel() on tensor with symbolic sizes"). They describe the
    graph, are never changed by running it, and are shared; weights are copied.
    """
    memo: dict[int, object] = {}
    for module in model.modules():
        graph = getattr(module, "graph", None)
        if isinstance(graph, torch.fx.Graph):
            memo.update((id(node.meta), node.meta) for node in graph.nodes)
    return copy.deepcopy(model, memo)
