"""A seeded mutation fuzzer over genuine torch.export archives (.pt2) and a torch.save checkpoint.

Each case takes a genuine export of a small network and applies one to three
mutations an attacker could make: members renamed in case or path, payload
configs rewritten (`use_pickle`, `path_name`), members inserted, duplicated or
replaced by pickles whose `__reduce__` makes a canary folder, graph nodes that
call foreign functions, shape expressions and tree specs that import or
evaluate, and zip quirks. `run_case` loads the result as a user would, without
trust, runs the model once if it loads, and reports whether the canary
appeared and how the loader answered. Used by tests/test_archive_fuzz.py (a
few hundred cases) and benchmarks/fuzz_archives.py (thousands).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from helpers import TinyNet
from torch import nn

from semiotui.engine.errors import LoadError
from semiotui.engine.loading import load_model

Members = list[tuple[str, bytes]]  # below the archive's root folder, in order (a name may repeat)


class MakesCanary:
    """Unpickling it calls os.mkdir(path)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


class WithConstant(nn.Module):
    """TinyNet plus a tensor constant, so the archive has a constants config with an entry."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyNet()
        self.offset = torch.full((1, 3, 1, 1), 0.5)  # a plain attribute: exported as a tensor constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x + self.offset)


@dataclass
class Genuine:
    name: str
    root: str
    members: Members
    batch: int


def genuine_archives(folder: Path) -> list[Genuine]:
    """Exports of small networks the way users make them (static, Dim('batch'), Dim.DYNAMIC, with a constant),
    and a torch.save checkpoint."""
    torch.manual_seed(0)
    kinds = {
        "static": (TinyNet(), 1, None),
        "named": (TinyNet(), 2, {"x": {0: torch.export.Dim("batch")}}),
        "dynamic": (TinyNet(), 2, {"x": {0: torch.export.Dim.DYNAMIC}}),
        "constant": (WithConstant(), 2, {"x": {0: torch.export.Dim("batch")}}),
    }
    archives = []
    for name, (model, batch, shapes) in kinds.items():
        path = folder / f"{name}.pt2"
        example = torch.randn(batch, 3, 16, 16)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.export.save(torch.export.export(model.eval(), (example,), dynamic_shapes=shapes), path)
        with zipfile.ZipFile(path) as z:
            root = z.namelist()[0].partition("/")[0]
            members = [(n.partition("/")[2], z.read(n)) for n in z.namelist()]
        archives.append(Genuine(name, root, members, 1 if shapes is None else 2))
    checkpoint = folder / "checkpoint.pt"  # what torch.load reads: a state dict with what training kept
    torch.save({"state_dict": TinyNet().state_dict(), "epoch": 3, "classes": ["a", "b"]}, checkpoint)
    with zipfile.ZipFile(checkpoint) as z:
        root = z.namelist()[0].partition("/")[0]
        archives.append(Genuine("checkpoint", root, [(n.partition("/")[2], z.read(n)) for n in z.namelist()], 2))
    return archives


# Payloads that make the canary folder if anything unpickles or evaluates them.
def _pickle(canary: Path, rng: random.Random) -> bytes:
    return pickle.dumps(MakesCanary(canary), protocol=rng.randint(0, 5))


def _saved(canary: Path, rng: random.Random) -> bytes:
    buffer = io.BytesIO()
    obj = rng.choice([MakesCanary(canary), (torch.zeros(2), MakesCanary(canary)), {"w": MakesCanary(canary)}])
    torch.save(obj, buffer)
    return buffer.getvalue()


def _saved_renamed(canary: Path, rng: random.Random) -> bytes:
    """A torch.save file whose pickle hides under another case or beside a harmless one."""
    good, evil = io.BytesIO(), _saved(canary, rng)
    torch.save(torch.zeros(2), good)
    with zipfile.ZipFile(io.BytesIO(evil)) as z:
        files = [(n, z.read(n)) for n in z.namelist()]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, data in files:
            if name.endswith("data.pkl"):
                name = name[: -len("data.pkl")] + rng.choice(["DATA.PKL", "Data.pkl", "data.pkl"])
            z.writestr(name, data)
        if rng.random() < 0.5:
            with zipfile.ZipFile(good) as g:
                z.writestr(files[0][0].partition("/")[0] + "/data.pkl", g.read(g.namelist()[0]))
    return out.getvalue()


PAYLOADS: list[Callable[[Path, random.Random], bytes]] = [_pickle, _saved, _saved_renamed]

NAMES = [  # where a payload may be put: what torch reads, under other cases (most are names the layout allows)
    "data/constants/opaque_obj_0", "data/constants/OPAQUE_OBJ_0", "data/constants/Opaque_Obj_1",
    "data/constants/custom_obj_0", "data/constants/tensor_constant_0", "data/constants/TENSOR_CONSTANT_0",
    "data/weights/weight_0", "data/weights/WEIGHT_1", "data/weights/model.pt", "data/weights/MODEL.pt",
    "data/constants/model.pt", "data/sample_inputs/model.pt", "data/sample_inputs/MODEL.pt", "models/other.json",
    "models/MODEL.json", "data/sample_inputs/other.pt", "data/weights/other_weights_config.json",
    "data/weights/weight_99", "extra/notes", "extra/data.pkl",
    # and some it refuses
    "data/aotinductor/model/model.so", "Data/Weights/weight_2", "./data/weights/weight_4", "version",
]
TARGETS = ["torch.os.system", "torch.load", "torch.hub.load", "torch.save", "torch.ops.load_library",
           "torch.ops.import_module", "_operator.call", "_operator.attrgetter", "builtins.eval", "math.exp",
           "torch.ops.aten.relu.default", "torch.sym_max", "#custom:op", "torch.ops.loaded_libraries.add"]
EXPRESSIONS = ["__import__('os').mkdir('{c}')", "sympify.__globals__['__builtins__']['__import__']('os').mkdir('{c}')",
               "s0 + (lambda: 1)()", "Symbol('s0').__class__", "s0*2", "Max(s0, 2)"]
TREE_TYPES = ["collections.defaultdict", "builtins.dict", "os.environ", "enum"]


def _config_name(members: Members, kind: str) -> str | None:
    return next((n for n, _ in members if n.startswith(f"data/{kind}/") and n.endswith("_config.json")), None)


def _replace(members: Members, name: str, data: bytes) -> None:
    members[:] = [(n, data if n == name else d) for n, d in members]


def _case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)


def rename_case(members: Members, canary: Path, rng: random.Random) -> str:
    i = rng.randrange(len(members))
    name, data = members[i]
    members[i] = (_case(name, rng), data)
    return f"rename {name} in case"


def rename_path(members: Members, canary: Path, rng: random.Random) -> str:
    i = rng.randrange(len(members))
    name, data = members[i]
    members[i] = (rng.choice(["./", "/", "../", "x/../", ""]) + name.replace("/", rng.choice(["/", "\\", "//"])), data)
    return f"rename {name} in path"


def rewrite_config(members: Members, canary: Path, rng: random.Random) -> str:
    config_name = _config_name(members, rng.choice(["weights", "constants"]))
    if config_name is None:
        return "no config"
    config = json.loads(dict(members)[config_name])
    entries = config["config"]
    if not entries or rng.random() < 0.3:
        meta = next(iter(json.loads(dict(members)[_config_name(members, "weights")])["config"].values()))
        entries[f"planted{rng.randrange(9)}"] = dict(meta)
    key = rng.choice(list(entries))
    entry = entries[key]
    entry["use_pickle"] = rng.choice([True, False, 1, 0, "yes", None])
    if rng.random() < 0.3:
        del entry["use_pickle"]
    path = rng.choice(["opaque_obj_0", "custom_obj_0", "tensor_constant_0", entry["path_name"], "weight_1",
                       "../weights/weight_0", "model.pt", "x/y"])
    entry["path_name"] = _case(path, rng) if rng.random() < 0.5 else path
    _replace(members, config_name, json.dumps(config).encode())
    folder = config_name.rpartition("/")[0]
    members.append((f"{folder}/{_case(path, rng) if rng.random() < 0.5 else path}", rng.choice(PAYLOADS)(canary, rng)))
    return f"config {config_name}: {key} -> {entry}"


def insert(members: Members, canary: Path, rng: random.Random) -> str:
    name = rng.choice(NAMES)
    members.insert(rng.randrange(len(members) + 1), (name, rng.choice(PAYLOADS)(canary, rng)))
    return f"insert {name}"


def duplicate(members: Members, canary: Path, rng: random.Random) -> str:
    name, _ = rng.choice(members)
    twin = _case(name, rng) if rng.random() < 0.5 else name
    members.insert(rng.randrange(len(members) + 1), (twin, rng.choice(PAYLOADS)(canary, rng)))
    return f"duplicate {name} as {twin}"


def replace_content(members: Members, canary: Path, rng: random.Random) -> str:
    i = rng.randrange(len(members))
    members[i] = (members[i][0], rng.choice(PAYLOADS)(canary, rng))
    return f"replace {members[i][0]}"


def _edit_program(members: Members, edit: Callable[[dict], str]) -> str:
    name = next(n for n, _ in members if n.startswith("models/"))
    program = json.loads(dict(members)[name])
    what = edit(program)
    _replace(members, name, json.dumps(program).encode())
    return what


def node_target(members: Members, canary: Path, rng: random.Random) -> str:
    target = rng.choice(TARGETS)

    def edit(program: dict) -> str:
        nodes = program["graph_module"]["graph"]["nodes"]
        node = rng.choice(nodes)
        node["target"] = target
        if rng.random() < 0.5:
            node["inputs"] = [{"name": "a", "arg": {"as_string": f"mkdir {canary}"}, "kind": 1}]
        if rng.random() < 0.3:
            node["inputs"] = [*node.get("inputs", []), {"name": "f", "arg": {"as_operator": target}, "kind": 1}]
        return f"node {node['name']} calls {target}"

    return _edit_program(members, edit)


def expression(members: Members, canary: Path, rng: random.Random) -> str:
    text = rng.choice(EXPRESSIONS).format(c=canary)

    def edit(program: dict) -> str:
        found: list[dict] = []
        stack: list[object] = [program]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                found += [value] if "expr_str" in value else []
                stack += value.values()
            elif isinstance(value, list):
                stack += value
        if not found:
            program["graph_module"]["graph"]["sym_int_values"] = [{"as_expr": {"expr_str": text, "hint": None}}]
        else:
            rng.choice(found)["expr_str"] = text
        return f"expression {text!r}"

    return _edit_program(members, edit)


def tree_spec(members: Members, canary: Path, rng: random.Random) -> str:
    kind = rng.choice(TREE_TYPES)

    def edit(program: dict) -> str:
        signature = program["graph_module"]["module_call_graph"][0]["signature"]
        if kind == "enum":
            context = json.dumps([{"__enum__": True, "fqn": "os:environ", "name": "HOME"}])
            spec = {"type": "builtins.dict", "context": context, "children_spec": []}
        else:
            spec = {"type": kind, "context": json.dumps("os.system"), "children_spec": []}
        signature[rng.choice(["in_spec", "out_spec"])] = json.dumps([1, spec])
        return f"tree spec {kind}"

    return _edit_program(members, edit)


def reorder(members: Members, canary: Path, rng: random.Random) -> str:
    """Harmless: torch and the check must not depend on the members' order."""
    rng.shuffle(members)
    return "reorder"


def extra_file(members: Members, canary: Path, rng: random.Random) -> str:
    """Harmless: torch reads extra/ files as text."""
    members.append((f"extra/note{rng.randrange(9)}", f"made by a test; {canary}".encode()))
    return "extra file"


def checkpoint_pickle(members: Members, canary: Path, rng: random.Random) -> str:
    """A torch.save file's own pickle replaced, or a second one beside it under another case."""
    payload = _pickle(canary, rng)
    if rng.random() < 0.5:
        _replace(members, "data.pkl", payload)
        return "data.pkl replaced"
    twin = _case("data.pkl", rng)
    members.insert(rng.randrange(len(members) + 1), (twin, payload))
    return f"{twin} beside data.pkl"


CHECKPOINT_MUTATIONS = [checkpoint_pickle, checkpoint_pickle, rename_case, duplicate, replace_content, insert,
                        reorder]
MUTATIONS = [reorder, extra_file, rename_case, rename_path, rewrite_config, rewrite_config, rewrite_config, insert, insert, duplicate,
             replace_content, replace_content, node_target, node_target, expression, tree_spec]
QUIRKS = ["none", "deflate", "prepend", "append", "directory", "comment", "root", "truncate"]


def write_zip(root: str, members: Members, quirk: str, rng: random.Random) -> bytes:
    """The archive's bytes, with one zip quirk."""
    out = io.BytesIO()
    deflated = rng.randrange(len(members)) if quirk == "deflate" else -1
    with zipfile.ZipFile(out, "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point
        if quirk == "directory":
            z.writestr(f"{root}/data/", b"")
        for i, (name, data) in enumerate(members):
            folder = "other" if quirk == "root" and i == len(members) - 1 else root
            info = zipfile.ZipInfo(f"{folder}/{name}")
            info.compress_type = zipfile.ZIP_DEFLATED if i == deflated else zipfile.ZIP_STORED
            z.writestr(info, data)
        if quirk == "comment":
            z.comment = b"PK\x05\x06" + bytes(18)
    data = out.getvalue()
    if quirk == "prepend":
        data = b"\0" * rng.randrange(1, 4096) + data
    elif quirk == "append":
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 512)))
    elif quirk == "truncate":
        data = data[: rng.randrange(len(data))]
    return data


@dataclass
class Outcome:
    description: str
    result: str  # "loaded" or "refused"
    message: str
    ran_code: bool
    problem: str | None  # what broke the fuzzer's rules, if anything


def _mutate(mutation: Callable[[Members, Path, random.Random], str], members: Members, canary: Path,
            rng: random.Random) -> str:
    try:
        return mutation(members, canary, rng)
    except (ValueError, KeyError, IndexError, TypeError, StopIteration, AttributeError):
        return f"{mutation.__name__} found nothing to change"  # an earlier mutation broke what it edits


def make_case(genuine: Genuine, canary: Path, rng: random.Random) -> tuple[str, bytes]:
    members = list(genuine.members)
    if genuine.name == "checkpoint" and rng.random() < 0.1:  # torch's legacy format: one bare pickle
        return "checkpoint: a bare pickle", _pickle(canary, rng)
    mutations = CHECKPOINT_MUTATIONS if genuine.name == "checkpoint" else MUTATIONS
    steps = [_mutate(rng.choice(mutations), members, canary, rng) for _ in range(rng.randint(1, 3))]
    quirk = rng.choice(QUIRKS) if rng.random() < 0.3 else "none"
    return f"{genuine.name}: {'; '.join(steps)}; zip {quirk}", write_zip(genuine.root, members, quirk, rng)


def run_case(genuine: Genuine, seed: int, folder: Path) -> Outcome:
    """Make case `seed`, load it without trust, run it once if it loads; did anything run?"""
    rng = random.Random(seed)
    canary = folder / "canary"
    description, data = make_case(genuine, canary, rng)
    path = folder / f"case{rng.choice(['.pt2', '.pt'])}"
    path.write_bytes(data)
    result, message, problem = "refused", "", None
    try:
        loaded = load_model(path, arch="helpers:TinyNet" if genuine.name == "checkpoint" else None)
        result = "loaded"
        try:
            with torch.no_grad():
                loaded.model(torch.zeros(genuine.batch, 3, 16, 16))
        except Exception:  # a broken graph may fail in any way; only code running matters
            pass
    except LoadError as exc:
        message = str(exc)
        if "\n" in message or len(message) > 600 or path.name not in message:
            problem = f"refusal is not one clear line: {message[:300]!r}"
    except Exception as exc:  # the loader promises a LoadError for any bad file
        problem = f"{type(exc).__name__} instead of a LoadError: {str(exc)[:200]!r}"
    ran = canary.exists()
    if ran:
        canary.rmdir()
        problem = "code ran"
    path.unlink()
    return Outcome(description, result, message, ran, problem)
