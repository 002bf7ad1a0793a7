"""The user's keys: config.json's `"keymap"` maps a binding's id to the keys that replace its defaults.

Textual's keymap (`App.set_keymap`), as posting uses it: `{"keymap": {"prune": "ctrl+g", "next-image": "n,space"}}`.
A binding that shares an id on several screens (`back`, `export`, `next-image`) moves on all of them at once.
Nothing here imports PyTorch: the keymap is read before the first frame.
"""

from __future__ import annotations

import unicodedata

from textual.keys import KEY_NAME_REPLACEMENTS, Keys

# Every binding id the interface declares: its default keys (as its Binding says) and what it does (README "Keys";
# a test checks all three agree).
BINDINGS = {
    "quit": ("q", "quit (asks while work would be lost)"),
    "help": ("question_mark,f1", "the help screen"),
    "back": ("escape", "close the screen, dialog or search (escape)"),
    "find": ("slash", "find a layer by name"),
    "next-match": ("down", "the next layer the search matches"),
    "cursor-down": ("j", "down the layer tree (also ↓)"),
    "cursor-up": ("k", "up the layer tree (also ↑)"),
    "measure": ("space", "measure the layer, or stop measuring it"),
    "next-image": ("n", "the next image"),
    "previous-image": ("p", "the previous image"),
    "compare": ("c", "open or close the comparison (in the pruning screen: compare with the original)"),
    "method": ("m", "the next saliency method"),
    "target": ("t", "the next target"),
    "view": ("v", "the saliency pane: map over image, map, image"),
    "against-control": ("a", "the curve against the control, or the entropy"),
    "export": ("e", "export a report"),
    "prune": ("g", "the pruning screen"),
    "next-view": ("right,l", "the comparison's next view"),
    "previous-view": ("left,h", "the comparison's previous view"),
    "view-image": ("1", "the comparison: this image"),
    "view-classes": ("2", "the comparison: per class"),
    "view-outcomes": ("3", "the comparison: right against wrong"),
    "pane": ("w", "on a small terminal, the comparison's next pane"),
    "open-image": ("enter", "open the highlighted misclassified image"),
    "start-pruning": ("s", "start pruning"),
    "stop-pruning": ("x", "stop pruning after the current step"),
    "yes": ("y", "answer yes"),
    "no": ("n", "answer no"),
}

MODIFIERS = {"ctrl", "alt", "shift", "meta", "super", "hyper"}


def character_key(character: str) -> str:
    """The name Textual gives the key of a printable character (`?`: `question_mark`, `/`: `slash`)."""
    name = unicodedata.name(character).lower().replace("-", "_").replace(" ", "_")
    return KEY_NAME_REPLACEMENTS.get(name, name)


# Key names Textual knows: its named keys, and the names of printable characters.
KEY_NAMES = {key.value for key in Keys if not key.value.startswith("<")} | {character_key(chr(code)) for code in range(33, 127) if not chr(code).isalnum()}


def read_keymap(config: dict) -> tuple[dict[str, str], list[str]]:
    """The keymap in `config` (binding id -> comma-separated keys), and one line for each entry left out."""
    entries = config.get("keymap", {})
    if not isinstance(entries, dict):
        return {}, ['config.json: "keymap" must map binding ids to keys, like {"prune": "ctrl+g"}']
    keymap, problems = {}, []
    for binding, keys in entries.items():
        if binding not in BINDINGS:
            problems.append(f"config.json keymap: no binding is called {binding!r} (the README's Keys lists them)")
        elif not isinstance(keys, str) or not keys.strip():
            problems.append(f"config.json keymap: {binding!r} needs keys as text, like \"ctrl+g\" or \"n,space\"")
        elif bad := [key for key in keys.split(",") if not is_key(key.strip())]:
            problems.append(f"config.json keymap: {binding!r}: {bad[0].strip()!r} is not a key Textual knows")
        else:
            keymap[binding] = ",".join(key.strip() for key in keys.split(","))
    return keymap, problems + clashes(keymap)


def clashes(keymap: dict[str, str]) -> list[str]:
    """A line for each key the keymap gives a binding that another one has too.

    Textual offers a key to the focused widget first, then to each container up to the screen, then to the app;
    the keymap's binding takes it from another only within one of them. So the layer tree's space (measure)
    still measures while the tree has the focus, whatever the screen's keys say.
    """
    keys = {binding: normal_keys(keymap.get(binding, default)) for binding, (default, _) in BINDINGS.items()}
    said = []
    for binding in keymap:
        for key in keys[binding]:
            others = [other for other in BINDINGS if other != binding and key in keys[other]]
            if others:
                said.append(f"config.json keymap: {key} is {' and '.join(others)}'s key too: {binding} takes it "
                            "where both are keys of one screen; a focused pane's own key acts first")
    return said


def normal_keys(keys: str) -> list[str]:
    """`keys` as Textual compares them (`?` is `question_mark`)."""
    return [character_key(key) if len(key) == 1 and not key.isalnum() else key for key in keys.split(",")]


def is_key(key: str) -> bool:
    """`key` names one key, with modifiers: `g`, `G`, `f5`, `ctrl+g`, `shift+tab`, `question_mark`."""
    *modifiers, name = key.split("+")
    return set(modifiers) <= MODIFIERS and (len(name) == 1 and name.isprintable() or name in KEY_NAMES)
