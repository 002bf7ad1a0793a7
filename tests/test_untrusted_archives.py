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
from helpers import TinyNet, interface_stub, only_error_line, write_tiny_inputs

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


def opaque_constant_in_another_case(files: dict[str, bytes], marker: Path) -> None:
    """The config names opaque_obj_0 as a raw tensor; the member is OPAQUE_OBJ_0: torch's lookup ignores
    case, reads it as the constant's bytes, then unpickles it for its prefix."""
    payload = pickle.dumps(MakesMarker(marker), protocol=2)
    payload += b"\0" * (-len(payload) % 4)  # whole float32s, as the raw read wants
    meta = json.loads(files["data/weights/model_weights_config.json"])["config"]["conv1.bias"]["tensor_meta"]
    meta.update(sizes=[{"as_int": len(payload) // 4}], strides=[{"as_int": 1}])
    entry = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": False, "tensor_meta": meta}
    files["data/constants/model_constants_config.json"] = json.dumps({"config": {"c": entry}}).encode()
    files["data/constants/OPAQUE_OBJ_0"] = payload


def pickled_weight_in_another_case(files: dict[str, bytes], marker: Path) -> None:
    """The config unpickles WEIGHT_1; the member is weight_1, which torch finds under either case."""
    config = json.loads(files["data/weights/model_weights_config.json"])
    entry = config["config"]["conv1.bias"]
    entry.update(use_pickle=True, path_name=entry["path_name"].upper())
    files["data/weights/" + entry["path_name"].lower()] = saved(MakesMarker(marker))
    files["data/weights/model_weights_config.json"] = json.dumps(config).encode()


def node_calls(target: str) -> Callable[[dict[str, bytes], Path], None]:
    """A graph node whose function is `target`, resolved by torch from attributes of torch, operator or math."""
    def attack(files: dict[str, bytes], marker: Path) -> None:
        program = json.loads(files["models/model.json"])
        node = program["graph_module"]["graph"]["nodes"][0]
        node["target"] = target
        files["models/model.json"] = json.dumps(program).encode()
    return attack


ATTACKS: dict[str, Callable[[dict[str, bytes], Path], None]] = {
    "pickled sample inputs": pickled_sample_inputs,
    "a pickled weight": pickled_weight,
    "an opaque constant": opaque_constant,
    "a shape expression": shape_expression,
    "an opaque constant in another case": opaque_constant_in_another_case,
    "a pickled weight in another case": pickled_weight_in_another_case,
}
RUN_ATTACKS = ("pickled sample inputs", "an opaque constant in another case", "a pickled weight in another case")


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


def test_the_dynamic_batch_export_the_tool_recommends_loads_without_trust(tmp_path):
    """Dim.DYNAMIC marks the sample input, which torch.save then pickles with _rebuild_from_type_v2."""
    path = tmp_path / "dynamic.pt2"
    x = torch.randn(2, 3, 16, 16)
    program = torch.export.export(TinyNet().eval(), (x,), dynamic_shapes={"x": {0: torch.export.Dim.DYNAMIC}})
    torch.export.save(program, path)
    loaded = load_model(path)
    assert loaded.batch_size is None
    with torch.no_grad():
        assert loaded.model(torch.zeros(5, 3, 16, 16)).shape[0] == 5


@pytest.mark.parametrize("target", ["torch.os.system", "torch.load", "torch.hub.load", "torch.save",
                                    "_operator.call", "torch.ops.load_library", "#ns:op"])
def test_a_graph_node_that_calls_anything_but_an_operator_is_refused(target, genuine, tmp_path):
    path = crafted(genuine, tmp_path / "node.pt2", node_calls(target), tmp_path / "unused")
    with pytest.raises(UnsafeArchive, match="calls"):
        check_archive(path)


def test_members_whose_names_differ_only_in_case_are_refused(genuine, tmp_path):
    def twin(files: dict[str, bytes], marker: Path) -> None:
        files["data/weights/WEIGHT_0"] = files["data/weights/weight_0"]

    path = crafted(genuine, tmp_path / "twin.pt2", twin, tmp_path / "unused")
    with pytest.raises(UnsafeArchive, match="differ only in case"):
        check_archive(path)


def test_a_compressed_member_is_refused(genuine, tmp_path):
    """torch.export.save never compresses; a compressed member could be a bomb for torch's reader."""
    path = tmp_path / "deflated.pt2"
    with zipfile.ZipFile(genuine) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name in source.namelist():
            z.writestr(name, source.read(name))
    with pytest.raises(UnsafeArchive, match="compressed"):
        check_archive(path)


def test_every_torch_load_inside_the_export_load_is_weights_only(genuine, tmp_path):
    """The second layer: a pickle the check missed would still meet PyTorch's weights_only unpickler."""
    from semiotui.engine.loading import _torch_loads

    marker = tmp_path / "marker"
    data = crafted(genuine, tmp_path / "evil.pt2", pickled_weight_in_another_case, marker).read_bytes()
    before = dict(os.environ)
    with _torch_loads(weights_only=True), pytest.raises(pickle.UnpicklingError, match="Weights only"):
        torch.export.load(io.BytesIO(data))
    assert not marker.exists()
    assert dict(os.environ) == before


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
    "compare": ["compare", "{m}", "-o", "{t}/report"],  # the crafted model against itself
    "prune": ["prune", "-o", "{t}/pruned.pt", "--max-steps", "1", "--finetune-batches", "0"],
    "interface": [],
}


@pytest.mark.parametrize("command", RUNS)
@pytest.mark.parametrize("attack", RUN_ATTACKS)
@pytest.mark.parametrize("suffix", [".pt2", ".pt"])
def test_no_command_runs_a_crafted_archives_code(command, attack, suffix, genuine, tmp_path, capsys, monkeypatch):
    from semiotui.tui import app

    monkeypatch.setattr(app, "run_app", interface_stub([]))  # the interface would open here
    (tmp_path / "inputs").mkdir()
    inputs = write_tiny_inputs(tmp_path / "inputs", images=4, size=16, classes=2)
    marker = tmp_path / "marker"
    model = crafted(genuine, inputs / f"evil{suffix}", ATTACKS[attack], marker)
    before = sha256(inputs)
    arguments = [a.replace("{t}", str(tmp_path)).replace("{m}", str(model)) for a in RUNS[command]]
    status = main([*arguments[:1], str(model), "--images", str(inputs / "images"), "--device", "cpu", *arguments[1:]])
    stderr = capsys.readouterr().err
    if command == "compare":  # it names each model as it opens it, before the error
        stderr = stderr.partition("\n")[2]
    line = only_error_line(stderr)
    assert status == 1 and "--trust" in line
    assert not marker.exists()
    assert sha256(inputs) == before
    assert not (tmp_path / "report").exists() and not (tmp_path / "pruned.pt").exists()
