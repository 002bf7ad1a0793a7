"""Hooks on a forward pass that are always removed, capturing what modules return, and restoring the model after."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

Hook = Callable[..., object]


@contextlib.contextmanager
def forward_hooks(
    hooks: Iterable[tuple[nn.Module, Hook]], pre_hooks: Iterable[tuple[nn.Module, Hook]] = ()
) -> Iterator[None]:
    """Register forward hooks (and pre-hooks) on their modules for the block; removed on exit, also after an error."""
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for module, hook in pre_hooks:
            handles.append(module.register_forward_pre_hook(hook))
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


class ActivationCapture:
    """Context manager that records each call's output of the named modules.

    The recorded tensor is the one the module returned; the rest of the network
    receives a clone, so a later in-place operation (`ReLU(inplace=True)`) cannot
    change what was recorded. Hooks are removed on exit, also after an exception.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], *, clone: bool = True) -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise KeyError(f"no module named {missing[0]!r} in the model")
        self._modules = {n: modules[n] for n in names}
        self._clone = clone
        self._hooks: contextlib.ExitStack | None = None
        self.outputs: dict[str, list[object]] = {n: [] for n in names}
        self.passed_on: dict[str, list[object]] = {n: [] for n in names}  # what the network received instead
        self.order: list[tuple[str, int]] = []  # (name, call number) as the calls return

    def __enter__(self) -> ActivationCapture:
        self._hooks = contextlib.ExitStack()
        self._hooks.enter_context(forward_hooks((module, self._hook(name)) for name, module in self._modules.items()))
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.close()

    def _hook(self, name: str):
        def hook(module: nn.Module, args: object, output: object) -> object:
            self.outputs[name].append(output)
            self.order.append((name, len(self.outputs[name])))
            passed = output.clone() if self._clone and isinstance(output, torch.Tensor) else output
            self.passed_on[name].append(passed)
            return passed if passed is not output else None

        return hook


@contextlib.contextmanager
def analysis_mode(model: nn.Module, *, frozen: bool = True) -> Iterator[nn.Module]:
    """Put `model` in eval mode with frozen parameters; restore both on exit.

    Eval mode keeps batch norm from mixing images; frozen parameters keep the
    backward pass to the activations we ask about.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        if frozen:
            for p, _ in flags:
                p.requires_grad_(False)
        yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)
