"""The weights inside a training framework's checkpoint: which entry holds them, and the prefix the framework
put before their names.

Lightning saves a LightningModule's `state_dict`, so the network's weights are
named `model.conv1.weight` (after the attribute that holds it); timm's train
script keeps an EMA copy beside the trained weights; DataParallel/DDP add
`module.`, torch.compile `_orig_mod.`. The prefix is found by comparing the
names with the model's own, never guessed from a list, and every choice made
is said in a note.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "net", "weights")
EMA_KEYS = ("state_dict_ema", "model_ema", "ema_state_dict")  # timm's train script; DeiT and others
WRAPPERS = {"module.": "DataParallel/DDP", "_orig_mod.": "torch.compile"}  # who adds each known prefix


def weights_entry(checkpoint: Mapping, ema: bool) -> tuple[str | None, str | None]:
    """The key of the weights in a checkpoint (None: the mapping is the weights themselves), and a note
    where it held both trained and EMA weights. EMA ones are taken unless `ema` is False."""
    trained = next((k for k in CHECKPOINT_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
    averaged = next((k for k in EMA_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
    if averaged is None or trained is None:
        return trained or averaged, None
    if ema:
        return averaged, f"using the EMA weights ('{averaged}'); pass --no-ema for the trained ones ('{trained}')"
    return trained, f"using the trained weights ('{trained}'), not the EMA ones ('{averaged}'), as --no-ema asks"


def strip_prefix(state: Mapping[str, object], own: Collection[str]) -> tuple[dict[str, object], str]:
    """`state` with the dotted prefix all its names share removed where that makes more of them the model's
    `own` names; the prefix removed ('' for none). The shortest such prefix wins a tie."""
    names = list(state)
    parts = [name.split(".")[:-1] for name in names]
    shared = 0
    while all(len(p) > shared and p[shared] == parts[0][shared] for p in parts):
        shared += 1
    own = set(own)
    best, found = "", sum(name in own for name in names)
    for depth in range(1, shared + 1):
        prefix = ".".join(parts[0][:depth]) + "."
        fits = sum(name[len(prefix):] in own for name in names)
        if fits > found:
            best, found = prefix, fits
    return {name[len(best):]: value for name, value in state.items()}, best


def prefix_note(prefix: str, file: str) -> str:
    """What stripping `prefix` from the weight names in `file` is said as, with who adds it where known."""
    known = [f"{WRAPPERS[part + '.']}'s {part}." for part in prefix.split(".") if part + "." in WRAPPERS]
    why = ", ".join(known) or "the attribute a training wrapper, such as a LightningModule, held the network in"
    return f"stripped the prefix '{prefix}' from the weight names in {file} ({why})"
