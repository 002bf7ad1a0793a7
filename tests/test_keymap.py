"""The user's keymap: every binding has an id the README lists, config.json remaps them, mistakes are named."""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

from helpers import demo_workspace, notifications, press, screen_text, wait_until

from semiotui.tui.app import SemiotuiApp
from semiotui.tui.help import HelpScreen
from semiotui.tui.keymap import BINDINGS, read_keymap
from semiotui.tui.prune_screen import PruneScreen

ROOT = Path(__file__).resolve().parents[1]


def declared_bindings() -> dict[str, list[str]]:
    """Each binding id the interface declares, with its default keys in order; AssertionError for one without id."""
    keys: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tui").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Binding":
                named = {k.arg: k.value for k in node.keywords}
                assert "id" in named, f"{path.name}:{node.lineno}: a binding without an id cannot be remapped"
                for key in node.args[0].value.split(","):
                    keys.setdefault(named["id"].value, [])
                    if key not in keys[named["id"].value]:
                        keys[named["id"].value].append(key)
    return keys


def test_every_binding_has_an_id_that_the_keymap_and_the_readme_know_with_its_default_keys():
    declared = declared_bindings()
    assert {binding: ",".join(keys) for binding, keys in declared.items()} == {
        binding: default for binding, (default, _) in BINDINGS.items()}
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| ((?:`[^`]+` ?)+) \|", (ROOT / "README.md").read_text(), re.M))
    assert {binding: re.findall(r"`([^`]+)`", keys) for binding, keys in rows.items()} == declared


def test_the_keymap_keeps_good_entries_and_names_each_bad_one():
    keymap, problems = read_keymap({"keymap": {
        "prune": "ctrl+g", "next-image": " n , space,", "help": "question_mark",
        "nothing": "x", "quit": "ctrl+flurb", "back": 3, "export": "",
    }})
    assert keymap == {"prune": "ctrl+g", "help": "question_mark"}
    assert problems == [
        "config.json keymap: 'next-image': '' is not a key Textual knows",
        "config.json keymap: no binding is called 'nothing' (the README's Keys lists them)",
        "config.json keymap: 'quit': 'ctrl+flurb' is not a key Textual knows",
        "config.json keymap: 'back' needs keys as text, like \"ctrl+g\" or \"n,space\"",
        "config.json keymap: 'export' needs keys as text, like \"ctrl+g\" or \"n,space\"",
    ]
    assert read_keymap({}) == ({}, [])
    assert read_keymap({"keymap": ["prune"]})[1] == [
        'config.json: "keymap" must map binding ids to keys, like {"prune": "ctrl+g"}']


def write_config(settings: dict) -> None:
    folder = Path(os.environ["XDG_CONFIG_HOME"]) / "semiotui"  # the test's own (conftest)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(settings), encoding="utf-8")


async def test_remapped_keys_act_show_in_the_footer_and_help_and_mistakes_are_warned():
    write_config({"theme": "textual-dark", "keymap": {"prune": "ctrl+g", "back": "escape,backspace", "help": "f2",
                                                      "bogus": "z"}})
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    said = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert any("no binding is called 'bogus'" in line for line in said)
        await press(pilot, "g")  # its old key does nothing now
        assert app.screen is app.explorer
        assert "^g Prune" in screen_text(app)
        await press(pilot, "ctrl+g")
        await wait_until(pilot, lambda: isinstance(app.screen, PruneScreen))
        await press(pilot, "backspace")  # "back" on every screen
        await wait_until(pilot, lambda: app.screen is app.explorer)
        await press(pilot, "f2")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await wait_until(pilot, lambda: "Your keys (config.json)" in screen_text(app))  # drawn after it opens
        assert "ctrl+g: the pruning screen (prune)" in screen_text(app)
        await press(pilot, "backspace")
        await wait_until(pilot, lambda: app.screen is app.explorer)


async def test_a_key_taken_from_another_binding_is_warned_once_and_the_keymap_wins():
    write_config({"keymap": {"compare": "n"}})  # n was the next image
    app = SemiotuiApp(demo_workspace(4), show_timings=False)
    said = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await press(pilot, "n")
        await wait_until(pilot, lambda: app.screen is not app.explorer)
        assert app.explorer.image == 0
        assert said == ["config.json keymap: n is next-image and no's key too: compare takes it where both are keys of "
                         "one screen; a focused pane's own key acts first"]


def test_keys_the_keymap_swaps_between_two_bindings_are_no_clash():
    keymap, problems = read_keymap({"keymap": {"next-image": "p", "previous-image": "n", "measure": "?"}})
    assert keymap == {"next-image": "p", "previous-image": "n", "measure": "?"}
    assert problems == [  # n and p only changed hands; n is still "no" in the question dialog
        "config.json keymap: n is no's key too: previous-image takes it where both are keys of one screen; "
        "a focused pane's own key acts first",
        "config.json keymap: question_mark is help's key too: measure takes it where both are keys of one screen; "
        "a focused pane's own key acts first"]
