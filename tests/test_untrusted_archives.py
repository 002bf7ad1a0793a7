"""A torch.export .pt2 runs no code of its own without --trust (issue 14, item 1).

Each crafted archive is a genuine TinyNet export with one part replaced by
something `torch.export.load` would execute: a pickle that calls `os.mkdir`, a
shape expression that `sympy.sympify` evaluates, an enum that makes torch
import a module. The payload makes a marker folder, so a run that executed it
leaves the marker behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import TinyNet, only_error_line, write_tiny_inputs

from semiotui.engine.archive import UnsafeArchive, check_archive
from semiotui.engine.loading import LoadError, load_model
from semiotui.tui.cli import main


class MakesMarker:
    """Unpickling it calls os.mkdir(path)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def export_tiny(path: Path, *, dynamic: bool = True) -> Path:
    x = torch.randn(2 if dynamic else 1, 3, 16, 16)
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    torch.export.save(torch.export.export(TinyNet().eval(), (x,), dynamic_shapes=shapes), path)
    return path


def saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def pickled_sample_inputs(files: dict[str, bytes], marker: Path) -> None:
    files["data/sample_inputs/model.pt"] = saved(((torch.zeros(2, 3, 16, 16),), {"x": MakesMarker(marker)}))


def pickled_weight(files: dict[str, bytes], marker: Path) -> None:
    config = json.loads(files["data/weights/model_weights_config.json"])
    entry = config["config"]["conv1.bias"]
    entry["use_pickle"] = True
    files["data/weights/" + entry["path_name"]] = saved(MakesMarker(marker))
    files["data/weights/model_weights_config.json"] = json.dumps(config).encode()


def opaque_constant(files: dict[str, bytes], marker: Path) -> None:
    meta = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}
    files["data/constants/model_constants_config.json"] = json.dumps({"config": {"c": meta}}).encode()
    files["data/constants/opaque_obj_0"] = pickle.dumps(MakesMarker(marker), protocol=2)


def shape_expression(files: dict[str, bytes], marker: Path) -> None:
    evil = f"sympify.__globals__['__builtins__']['__import__']('os').mkdir('{marker}')"
    program = files["models/model.json"].decode()
    genuine = "Symbol('s77', positive=True, integer=True)"
    assert genuine in program
    files["models/model.json"] = program.replace(genuine, evil).encode()


def enum_in_a_tree_spec(files: dict[str, bytes], marker: Path) -> None:
    """torch imports the enum's module and looks up the name: here a module of the attacker's choice."""
    program = json.loads(files["models/model.json"])
    signature = program["graph_module"]["module_call_graph"][0]["signature"]
    context = json.dumps([{"__enum__": True, "fqn": "os:environ", "name": "HOME"}])
    signature["in_spec"] = json.dumps([1, {"type": "builtins.dict", "context": context, "children_spec": []}])
    files["models/model.json"] = json.dumps(program).encode()


ATTACKS: dict[str, Callable[[dict[str, bytes], Path], None]] = {
    "pickled sample inputs": pickled_sample_inputs,
    "a pickled weight": pickled_weight,
    "an opaque constant": opaque_constant,
    "a shape expression": shape_expression,
}


def crafted(genuine: Path, out: Path, attack: Callable[[dict[str, bytes], Path], None], marker: Path) -> Path:
    """`genuine` with the attack applied to its members (named below the archive's root folder)."""
    with zipfile.ZipFile(genuine) as z:
        root = z.namelist()[0].partition("/")[0]
        files = {n.partition("/")[2]: z.read(n) for n in z.namelist()}
    attack(files, marker)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(f"{root}/{name}", data)
    return out


@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("genuine") / "tiny.pt2")


def test_genuine_archives_pass_the_check_and_load_without_trust(genuine, tmp_path):
    static = export_tiny(tmp_path / "static.pt2", dynamic=False)
    for path in (genuine, static):
        check_archive(path)
        assert load_model(path).info.format == "export"


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_crafted_archive_runs_no_code_without_trust(attack, genuine, tmp_path):
    marker = tmp_path / "marker"
    path = crafted(genuine, tmp_path / "evil.pt2", ATTACKS[attack], marker)
    with pytest.raises(LoadError) as err:
        load_model(path)
    assert not marker.exists()
    message = str(err.value)
    assert "evil.pt2" in message and "could run code" in message and "`trust`" in message
    assert "\n" not in message


def test_an_enum_in_a_tree_spec_is_refused_without_trust(genuine, tmp_path):
    path = crafted(genuine, tmp_path / "enum.pt2", enum_in_a_tree_spec, tmp_path / "unused")
    with pytest.raises(UnsafeArchive, match="enum"):
        check_archive(path)
    with pytest.raises(LoadError, match="`trust`"):
        load_model(path)


def test_members_torch_export_save_does_not_write_are_refused(genuine, tmp_path):
    def compiled_code(files: dict[str, bytes], marker: Path) -> None:
        files["data/aotinductor/model/model.so"] = b"\x7fELF"

    path = crafted(genuine, tmp_path / "aoti.pt2", compiled_code, tmp_path / "unused")
    with pytest.raises(UnsafeArchive, match="aotinductor"):
        check_archive(path)


def test_trust_loads_an_archive_the_check_refuses(genuine, tmp_path):
    marker = tmp_path / "marker"
    path = crafted(genuine, tmp_path / "evil.pt2", pickled_sample_inputs, marker)
    assert load_model(path, trust=True).info.format == "export"
    assert marker.exists()  # the user's choice: --trust runs what the archive holds


def sha256(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


RUNS = {  # the command's own arguments: each would open the model, then write its output
    "report": ["report", "-o", "{t}/report"],
    "prune": ["prune", "-o", "{t}/pruned.pt", "--max-steps", "1", "--finetune-batches", "0"],
    "interface": [],
}


@pytest.mark.parametrize("command", RUNS)
def test_no_command_runs_a_crafted_archives_code(command, genuine, tmp_path, capsys, monkeypatch):
    from semiotui.tui import app

    monkeypatch.setattr(app, "run_app", lambda workspace: 0)  # the interface would open here
    (tmp_path / "inputs").mkdir()
    inputs = write_tiny_inputs(tmp_path / "inputs", images=4, size=16, classes=2)
    marker = tmp_path / "marker"
    model = crafted(genuine, inputs / "evil.pt2", pickled_sample_inputs, marker)
    before = sha256(inputs)
    arguments = [a.replace("{t}", str(tmp_path)) for a in RUNS[command]]
    status = main([*arguments[:1], str(model), "--images", str(inputs / "images"), "--device", "cpu", *arguments[1:]])
    line = only_error_line(capsys.readouterr().err)
    assert status == 1 and "--trust" in line
    assert not marker.exists()
    assert sha256(inputs) == before
    assert not (tmp_path / "report").exists() and not (tmp_path / "pruned.pt").exists()
