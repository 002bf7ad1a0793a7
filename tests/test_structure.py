"""The interface's structure, read from its source (AST): what it imports of the engine, and what a screen reaches.

- The interface talks to the engine through the session (`semiotui.engine.session`) and the façade
  (`semiotui.engine`), never through `engine.analysis`, `engine.control` or `engine.greedy` directly.
- A screen gets what it needs in its constructor (the run controller, the workspace, callbacks): no class of the
  interface takes a screen in its constructor, and none reads `self.app.<name>` (or `<anything>.app.<name>`)
  except Textual's own App interface below; `self.app` itself is never passed on or kept. The app's attributes
  (its session, controller, explorer) are the app's business. A screen may still call the screens it opens
  (attributes down).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TUI = Path(__file__).resolve().parents[1] / "tui"
ENGINE_INTERNALS = {"semiotui.engine.analysis", "semiotui.engine.control", "semiotui.engine.greedy"}
# The command-line front ends, which another change moves onto the session: allowed while they still do.
IMPORTS_ALLOWED_FOR_NOW = {"commands.py", "prune_command.py"}
# What a screen or widget may use of `self.app`: Textual's App interface (checked below), nothing of ours.
APP_INTERFACE = {
    "push_screen", "pop_screen", "switch_screen", "exit", "bell", "notify", "export_screenshot", "call_from_thread",
    "theme", "theme_changed_signal", "theme_variables", "no_color", "console", "size",
    "install_screen", "uninstall_screen",
}
SCREEN_BASES = {"Screen", "ModalScreen"}


def engine_internals_imported(tree: ast.Module) -> list[str]:
    """The modules of `ENGINE_INTERNALS` (or within them) that `tree` imports."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            modules = [node.module]
            if node.module == "semiotui.engine":
                modules += [f"semiotui.engine.{alias.name}" for alias in node.names]
        else:
            continue
        found += [m for m in modules if ".".join(m.split(".")[:3]) in ENGINE_INTERNALS]
    return found


def base_names(cls: ast.ClassDef) -> set[str]:
    """The names of a class's bases, without subscripts (`Screen[None]` is `Screen`)."""
    names = set()
    for base in cls.bases:
        node = base.value if isinstance(base, ast.Subscript) else base
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def classes(folder: Path) -> dict[str, tuple[Path, ast.ClassDef]]:
    return {node.name: (path, node) for path in sorted(folder.glob("*.py"))
            for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)}


def screen_classes(found: dict[str, tuple[Path, ast.ClassDef]]) -> set[str]:
    """Textual's screens and the interface's classes derived from them."""
    screens = set(SCREEN_BASES)
    while True:
        more = {name for name, (_, cls) in found.items() if base_names(cls) & screens} - screens
        if not more:
            return screens
        screens |= more


def app_reaches(cls: ast.ClassDef) -> list[str]:
    """Each use of `<x>.app` in the class other than `<x>.app.<name of APP_INTERFACE>`."""
    parents = {child: node for node in ast.walk(cls) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and node.attr == "app":
            parent = parents.get(node)
            used = parent.attr if isinstance(parent, ast.Attribute) and parent.value is node else None
            if used not in APP_INTERFACE:
                found.append((node.lineno, ast.unparse(parent if used else node)))
    return [f"line {line}: {use}" for line, use in sorted(found)]


def screens_taken(cls: ast.ClassDef, screens: set[str]) -> list[str]:
    """The parameters of the class's constructor that are annotated with a screen class."""
    found = []
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            args = node.args
            for arg in args.posonlyargs + args.args + args.kwonlyargs:
                if arg.annotation is not None:
                    names = {n.id for n in ast.walk(arg.annotation) if isinstance(n, ast.Name)}
                    names |= {n.attr for n in ast.walk(arg.annotation) if isinstance(n, ast.Attribute)}
                    if isinstance(arg.annotation, ast.Constant) and isinstance(arg.annotation.value, str):
                        names |= set(arg.annotation.value.replace("|", " ").replace("[", " ").split())
                    if names & screens:
                        found.append(f"{arg.arg}: {ast.unparse(arg.annotation)}")
    return found


def structure_problems(folder: Path) -> list[str]:
    """Every breach of the rules above in the modules of `folder`."""
    problems = []
    for path in sorted(folder.glob("*.py")):
        if path.name not in IMPORTS_ALLOWED_FOR_NOW:
            problems += [f"{path.name} imports {m}" for m in engine_internals_imported(ast.parse(path.read_text()))]
    found = classes(folder)
    screens = screen_classes(found)
    for name, (path, cls) in found.items():
        if "App" in base_names(cls):
            continue  # the app's own attributes are its own
        problems += [f"{path.name}: {name} reaches past the app's interface, {use}" for use in app_reaches(cls)]
        problems += [f"{path.name}: {name} is given a screen ({taken})" for taken in screens_taken(cls, screens)]
    return problems


def test_the_interface_reaches_the_engine_through_the_session_and_the_facade_only():
    assert [p for p in structure_problems(TUI) if " imports " in p] == []


def test_a_front_end_is_allowed_its_imports_only_while_it_still_has_them():
    stale = {name for name in IMPORTS_ALLOWED_FOR_NOW
             if not engine_internals_imported(ast.parse((TUI / name).read_text()))}
    assert stale == set(), "they go through the session now: remove them from IMPORTS_ALLOWED_FOR_NOW"


def test_no_screen_reaches_into_another_screen_or_the_apps_attributes():
    assert [p for p in structure_problems(TUI) if " imports " not in p] == []


def test_the_allowed_app_interface_is_textuals_own():
    from textual.app import App

    app = App()
    assert {name for name in APP_INTERFACE if name.startswith("_") or not hasattr(app, name)} == set()


@pytest.mark.parametrize("source, problem", [
    ("from semiotui.engine.analysis import BatchDone\n", "m.py imports semiotui.engine.analysis"),
    ("import semiotui.engine.greedy\n", "m.py imports semiotui.engine.greedy"),
    ("from semiotui.engine import control\n", "m.py imports semiotui.engine.control"),
    ("class S(Screen[None]):\n    def f(self):\n        return self.app.explorer.run_state\n",
     "m.py: S reaches past the app's interface, line 3: self.app.explorer"),
    ("class W(Widget):\n    def f(self):\n        keep(self.app)\n",
     "m.py: W reaches past the app's interface, line 3: self.app"),
    ("class S(ModalScreen):\n    def __init__(self, explorer: Screen) -> None:\n        pass\n",
     "m.py: S is given a screen (explorer: Screen)"),
])
def test_the_rules_catch_what_they_forbid(tmp_path, source, problem):
    (tmp_path / "m.py").write_text(source)
    assert structure_problems(tmp_path) == [problem]


def test_the_rules_allow_the_session_the_facade_and_textuals_app_interface(tmp_path):
    (tmp_path / "m.py").write_text(
        "from semiotui.engine import AnalysisResult\nfrom semiotui.engine.session import Job\n"
        "class S(Screen):\n    def __init__(self, controller: RunController) -> None:\n"
        "        self.app.push_screen(self.app.theme)\n")
    assert structure_problems(tmp_path) == []
