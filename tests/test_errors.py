"""Mistakes name the engine's parameters; each front end words them its way; a bug's traceback shows with --debug."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from semiotui.engine import SemiotuiError, open_workspace
from semiotui.engine.errors import InvalidValue, LoadError, one_line
from semiotui.engine.greedy import PruneSettings
from semiotui.engine.opening import input_paths
from semiotui.tui.errors import for_command_line, for_interface

ROOT = Path(__file__).resolve().parents[1]


def test_the_engine_names_parameters_and_the_command_line_says_their_flags():
    with pytest.raises(InvalidValue) as err:
        PruneSettings(target_params=2.0).check()
    assert str(err.value) == "`target_params` must be between 0 and 1, got 2.0"
    assert for_command_line(err.value) == "--target-params must be between 0 and 1, got 2.0"
    assert for_interface(err.value) == "target params must be between 0 and 1, got 2.0"
    for parameter, flag in [("class_names", "--classes"), ("imports", "--import"), ("arch_kwargs", "--arch-kwargs")]:
        assert for_command_line(InvalidValue(f"`{parameter}` x")) == f"{flag} x"


def test_a_library_user_gets_a_semiotui_error_naming_the_parameter(tmp_path):
    assert input_paths(None, str(tmp_path)) == [str(tmp_path)]  # one folder, not its letters
    with pytest.raises(SemiotuiError, match="no images to analyse: pass `images`"):
        open_workspace(tmp_path / "model.pt")
    with pytest.raises(LoadError, match="no such file"):
        open_workspace(tmp_path / "model.pt", images=[tmp_path])


def test_a_bug_carries_its_traceback_in_the_interface_only_when_asked():
    try:
        {}["missing"]
    except KeyError as exc:
        bug = exc
    assert one_line(bug) == "missing"
    assert for_interface(bug) == "missing"
    shown = for_interface(bug, debug=True)
    assert shown.startswith("missing\nTraceback") and "KeyError" in shown
    assert for_interface(InvalidValue("`levels` x"), debug=True) == "levels x"  # the user's mistake: no traceback


def test_one_line_cuts_a_quoted_message_short_and_spells_out_what_cannot_be_shown():
    assert one_line(ValueError("a\n  b")) == "a b"
    assert one_line(ValueError()) == "ValueError"
    assert one_line(ValueError("x" * 300), short=True) == "x" * 200 + "..."
    assert one_line(ValueError("é\x1b]0;T\x07 \u202eb"), short=True) == "é\\x1b]0;T\\x07 \\u202eb"


def imports(path: Path) -> set[str]:
    """The semiotui modules a file imports when it runs (relative imports resolved; not those for type hints)."""
    package = {"engine": "semiotui.engine", "tui": "semiotui.tui"}[path.parent.name]
    tree = ast.parse(path.read_text())
    hints = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
             for n in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.ImportFrom):
            base = f"{package}." if node.level else ""
            module = f"{base}{node.module}" if node.module else package
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {name for name in found if name.startswith("semiotui.")}


def test_the_engine_never_imports_the_interface_and_the_interface_has_no_import_cycle():
    for path in (ROOT / "engine").glob("*.py"):
        assert not any(name.startswith("semiotui.tui") for name in imports(path)), path
    modules = {f"semiotui.tui.{p.stem}": p for p in (ROOT / "tui").glob("*.py")}
    graph = {name: imports(path) & set(modules) for name, path in modules.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    assert [name for name in graph if reaches(name, name, set())] == []


def test_a_quoted_message_keeps_its_own_backticks_out_of_the_flags():
    torch_says = ValueError("we changed the default value of the `weights_only` argument from `False` to `True`")
    error = InvalidValue(f"`model` is damaged ({one_line(torch_says, short=True)})")
    assert for_command_line(error) == ("MODEL is damaged (we changed the default value of the 'weights_only' "
                                       "argument from 'False' to 'True')")


CTRL_C_AS_TORCH_IMPORTS = """
import os, runpy, signal, sys, time

MODE = sys.argv.pop(1)

class CtrlC:  # Ctrl-C as PyTorch starts to import, which takes seconds
    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)
        except KeyboardInterrupt:
            if MODE == "raised":
                raise
        raise ImportError("PyCapsule_Import could not import module 'datetime'")  # as NumPy's C code says it

sys.meta_path.insert(0, CtrlC())
sys.argv[0] = "semiotui"
runpy.run_module("semiotui", run_name="__main__")
"""


@pytest.mark.parametrize("ctrl_c", ["raised", "turned into an ImportError"])
@pytest.mark.parametrize("arguments", [["model.pt"], ["report", "model.pt", "--images", "images", "-o", "out"]],
                         ids=["interface", "report"])
@pytest.mark.slow  # fresh interpreters importing PyTorch
def test_ctrl_c_while_pytorch_imports_exits_130_with_one_line(arguments, ctrl_c, tmp_path):
    run = subprocess.run([sys.executable, "-c", CTRL_C_AS_TORCH_IMPORTS, ctrl_c, *arguments], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120)
    assert (run.returncode, run.stderr) == (130, "semiotui: interrupted\n")


def test_the_command_line_parser_leaves_pruning_and_its_optional_imports_for_later():
    """torch_pruning imports timm when it is installed (seconds): --help and argument errors need neither."""
    code = "import sys; from semiotui.tui.cli import build_parser; build_parser('prune'); print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "torch_pruning" not in loaded and "'timm'" not in loaded
