"""`semiotui --help` and argument errors answer without importing PyTorch or NumPy; the engine's package is a lazy
façade; the method's description ships with the package and `--help` names where it is.

Each command runs in a fresh interpreter: this one has imported PyTorch long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import semiotui
from semiotui import engine
from semiotui.tui import cli

ROOT = Path(__file__).resolve().parent.parent

RUN = """
import json, runpy, sys

sys.argv = ["semiotui", *sys.argv[1:]]
try:
    runpy.run_module("semiotui", run_name="__main__")
except SystemExit as exit:
    print(json.dumps({"status": exit.code, "loaded": sorted(n for n in ("torch", "numpy") if n in sys.modules)}))
"""


def run_semiotui(*arguments: str) -> tuple[dict, str, str]:
    """What `semiotui ARGUMENTS` printed, its exit status and which of PyTorch and NumPy it imported."""
    done = subprocess.run([sys.executable, "-c", RUN, *arguments], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "1000"})  # help lines unwrapped: a path stays whole
    *printed, last = done.stdout.splitlines()
    return json.loads(last), "\n".join(printed), done.stderr


@pytest.mark.parametrize("command", [[], ["report"], ["prune"], ["compare"], ["open"], ["demo"]],
                         ids=["interface", "report", "prune", "compare", "open", "demo"])
def test_help_imports_neither_pytorch_nor_numpy(command):
    outcome, printed, _ = run_semiotui(*command, "--help")
    assert outcome == {"status": 0, "loaded": []}
    assert printed.startswith(f"usage: {' '.join(['semiotui', *command])} ")


def test_an_argument_error_is_one_line_with_status_2_and_imports_neither_pytorch_nor_numpy():
    outcome, _, stderr = run_semiotui("report", "-o", "out", "--levels", "many")
    assert outcome == {"status": 2, "loaded": []}
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == "semiotui report: error: argument --levels: invalid int value: 'many'"


def test_help_names_the_installed_method_description():
    assert semiotui.METHOD.is_file() and semiotui.METHOD.read_text().startswith("# ")
    for command, section in (([], ""), (["prune"], " §5"), (["report"], " §2.1")):
        _, printed, _ = run_semiotui(*command, "--help")
        assert f"{semiotui.METHOD}{section}" in printed


def test_the_choices_the_parser_offers_are_the_engines():
    from semiotui.engine.entropy import ESTIMATORS
    from semiotui.engine.greedy import CRITERIA
    from semiotui.engine.reports import DEFAULT_MAPS, FORMATS
    from semiotui.engine.saliency import METHODS

    assert (cli.METHODS, cli.ESTIMATORS, cli.CRITERIA) == (METHODS, ESTIMATORS, CRITERIA)
    assert (cli.FORMATS, cli.DEFAULT_MAPS) == (FORMATS, DEFAULT_MAPS)


def test_every_facade_name_is_its_modules_and_importing_the_package_imports_no_pytorch():
    for name, module in engine.FACADE.items():
        assert getattr(engine, name) is getattr(sys.modules[f"semiotui.engine.{module}"], name), name
    assert engine.__all__ == sorted(engine.FACADE) and set(engine.FACADE) <= set(dir(engine))
    with pytest.raises(AttributeError, match="no_such_name"):
        engine.no_such_name  # noqa: B018
    code = "import sys, semiotui.engine; print(sorted(n for n in ('torch', 'numpy') if n in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_a_facade_name_shared_with_a_submodule_stays_the_facades_once_the_submodule_is_imported():
    code = ("import semiotui.engine.superization\n"  # the module: its package's attribute `superization` is set
            "from semiotui.engine import superization\n"
            "print(superization.__module__, callable(superization))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "semiotui.engine.superization True\n"


@pytest.mark.slow  # builds the wheel
def test_the_wheel_holds_the_method_description(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("semiotui-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("semiotui/docs/METHOD.md") == semiotui.METHOD.read_bytes()


def test_every_command_runs_a_function_of_commands():
    from semiotui.tui import commands

    for command in (None, *cli.COMMANDS):
        assert callable(getattr(commands, cli.build_parser(command).get_default("run")))
