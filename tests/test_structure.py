"""The interface's structure, read from its source (AST): what it imports of the engine, and what a screen reaches.

- The interface and the command line talk to the engine through the session (`semiotui.engine.session`) and
  the façade (`semiotui.engine`), never through `engine.analysis`, `engine.control` or `engine.greedy` directly.
- The command line imports PyTorch only once a command runs: `tui/commands.py` (which `cli` imports to build its
  parsers, the interface's too) imports no module that imports torch at its top level.
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

ROOT = Path(__file__).resolve().parents[1]
TUI = ROOT / "tui"
PACKAGES = {"semiotui.engine": ROOT / "engine", "semiotui.tui": ROOT / "tui"}
ENGINE_INTERNALS = {"semiotui.engine.analysis", "semiotui.engine.control", "semiotui.engine.greedy"}
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


def module_file(module: str) -> Path | None:
    """The source file of one of our modules; None for anything else, and for the packages themselves."""
    for package, folder in PACKAGES.items():
        if module.startswith(package + "."):
            path = folder / (module[len(package) + 1:].replace(".", "/") + ".py")
            return path if path.is_file() else None
    return None


def module_level_imports(path: Path, package: str) -> set[str]:
    """What importing the module at `path` (in `package`) imports: its top-level imports, not those inside
    functions or under `if TYPE_CHECKING`; `from x import y` counts x and x.y (y may be a module)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
                module = ".".join(part for part in (base, node.module) if part)
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + [n for h in node.handlers for n in h.body] + node.orelse + node.finalbody)

    visit(ast.parse(path.read_text()).body)
    return found


def imports_torch(module: str, seen: set[str] | None = None) -> bool:
    """Whether importing `module` imports torch, through the top-level imports of our modules.

    The packages' own `__init__` is not followed: the engine's façade imports what it names on first use.
    """
    seen = set() if seen is None else seen
    if module.split(".")[0] == "torch":
        return True
    path = module_file(module)
    if path is None or module in seen:
        return False
    seen.add(module)
    return any(imports_torch(m, seen) for m in module_level_imports(path, module.rsplit(".", 1)[0]))


def torch_at_import(path: Path) -> list[str]:
    """The modules that the module at `path`, in the interface's package, imports at its top level and that import
    torch."""
    return sorted(m for m in module_level_imports(path, "semiotui.tui") if imports_torch(m))


def structure_problems(folder: Path) -> list[str]:
    """Every breach of the rules above in the modules of `folder`."""
    problems = []
    for path in sorted(folder.glob("*.py")):
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


def test_the_command_line_imports_pytorch_only_once_a_command_runs():
    assert torch_at_import(TUI / "commands.py") == []


def test_the_torch_check_follows_top_level_imports_only(tmp_path):
    (tmp_path / "m.py").write_text(
        "from typing import TYPE_CHECKING\nfrom semiotui.engine.errors import InvalidValue\nfrom . import plain\n"
        "if TYPE_CHECKING:\n    from semiotui.engine.session import Session\n"
        "def run():\n    from semiotui.engine.analysis import analyse\n")
    assert torch_at_import(tmp_path / "m.py") == []
    (tmp_path / "m.py").write_text("from semiotui.engine.streams import run_to_end\nfrom .controller import X\n")
    assert torch_at_import(tmp_path / "m.py") == ["semiotui.tui.controller"]  # it imports torch itself
    (tmp_path / "m.py").write_text("from semiotui.engine import AnalysisSettings, opening\n")
    assert torch_at_import(tmp_path / "m.py") == ["semiotui.engine.opening"]  # a module, not a name of the façade


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
