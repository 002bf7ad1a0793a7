"""Checking that a torch.export archive (.pt2) runs no code when torch loads it.

`torch.export.load` unpickles parts of the archive (pickled weights and
constants, the sample inputs, opaque objects), reads shape expressions with
`sympy.sympify` (which evaluates Python), imports the modules that some tree
specs name and calls whatever its graph nodes name. A genuine archive of an
ordinary model needs none of that power: its pickles rebuild tensors, its
expressions are arithmetic on shape symbols, its nodes call operators.

`check_archive` reads the archive the way torch will: through torch's own zip
reader (whose lookup ignores case), asking for exactly the members torch asks
for, each checked for the way torch reads it (a config says which payloads it
unpickles). Python's view of the zip must agree with torch's, so nothing can
hide behind a difference between the two readers. The caller loads the very
bytes that were checked, with every `torch.load` forced to `weights_only`
(`engine.loading`), so a pickle that slipped past would still run nothing.
"""

from __future__ import annotations

import io
import json
import keyword
import math
import operator
import pickletools
import re
import tokenize
import zipfile
from pathlib import Path

import torch

from .names import shown


class UnsafeArchive(Exception):
    """Something in a .pt2 that could run code when torch loads it; the message says what and where."""


# What a pickle inside may name: the functions and classes that rebuild tensors.
_STORAGES = ("Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
             "ComplexDouble", "ComplexFloat")
_DTYPES = {name for name, value in vars(torch).items() if isinstance(value, torch.dtype)}
SAFE_GLOBALS = {
    "collections": {"OrderedDict"},
    "torch._utils": {"_rebuild_tensor_v2", "_rebuild_parameter"},
    "torch._tensor": {"_rebuild_from_type_v2"},  # a sample input export marked dynamic (Dim.DYNAMIC)
    "torch": {"Size", "device", "Tensor", *(f"{kind}Storage" for kind in _STORAGES), *_DTYPES},
}

# Members of the archive, below its root folder, and of a torch.save archive nested in it. ASCII only:
# torch's reader folds the case of ASCII letters when it looks a name up, and of nothing else.
_MEMBERS = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|models/[\w.-]+\.json"
    r"|data/(weights|constants)/[\w.-]+|data/sample_inputs/[\w.-]+\.pt|extra/[\w./-]+", re.ASCII
)
_SAVED_MEMBERS = re.compile(r"data\.pkl|\.format_version|\.storage_alignment|byteorder|version|\.data/version"
                            r"|\.data/serialization_id|data/\d+", re.ASCII)
_PAYLOAD_NAME = re.compile(r"(?!\.\.?$)[\w.-]+", re.ASCII)  # a weight's or constant's file, inside its folder
_OBJECT_PREFIXES = ("custom_obj", "opaque_obj")  # Python or TorchScript objects, always unpickled

# Shape expressions: sympy constructors and torch's integer functions on shape symbols (s0, u1, ...).
_EXPRESSION_NAMES = {
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Abs", "Mod", "floor", "ceiling",
    "sqrt", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan",
    "GreaterThan", "Equality", "Unequality", "And", "Or", "Not", "Piecewise", "true", "false", "oo", "zoo",
    "nan", "True", "False", "None", "FloorDiv", "CeilDiv", "CleanDiv", "ModularIndexing", "PythonMod",
    "Where", "FloorToInt", "CeilToInt", "TruncToInt", "TruncToFloat", "RoundToInt", "RoundDecimal", "ToFloat",
    "FloatPow", "PowByNatural", "FloatTrueDiv", "IntTrueDiv", "LShift", "RShift", "Identity",
    "IsNonOverlappingAndDenseIndicator",
}
_SHAPE_SYMBOL = re.compile(r"[a-z]+\d+|(OpaqueUnaryFn|BitwiseFn)_[a-z0-9_]+")
_EXPRESSION_OPS = {"(", ")", ",", "+", "-", "*", "/", "//", "%", "**", "=", "<", ">", "<=", ">=", "==", "!=",
                   "&", "|", "~"}
_QUOTED_NAME = re.compile(r"""(['"])[A-Za-z_]\w*\1""")
_TREE_TYPES = {None, "builtins.tuple", "builtins.list", "builtins.dict", "collections.OrderedDict",
               "collections.namedtuple", "torch.fx.immutable_collections.immutable_list",
               "torch.fx.immutable_collections.immutable_dict"}

# What a graph node may call besides torch's operators: the arithmetic on shapes that export writes.
_SHAPE_FUNCTIONS = {
    *(getattr(operator, name) for name in (
        "eq", "ne", "le", "ge", "lt", "gt", "neg", "pos", "abs", "not_", "mul", "add", "sub", "floordiv", "mod",
        "pow", "truediv", "and_", "or_", "xor", "lshift", "rshift", "getitem")),
    *(value for value in vars(math).values() if callable(value)),
    *(getattr(torch, name) for name in dir(torch) if name.startswith(("sym_", "_sym_"))),
}
_OPERATORS = (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator)


def check_archive(archive: str | Path | bytes) -> None:
    """Raise `UnsafeArchive` if loading `archive` (its path or its bytes) with `torch.export.load` could run code.

    Raises `zipfile.BadZipFile` for an archive torch cannot read at all.
    """
    data = archive if isinstance(archive, bytes) else Path(archive).read_bytes()
    names, reader = _read_zip(data, _MEMBERS, "torch.export.save does not write for a model")
    for name in names:  # a second layer: no object under any name, whatever refers to it
        if name.rpartition("/")[2].lower().startswith(_OBJECT_PREFIXES):
            raise UnsafeArchive(f"it holds '{shown(name)}', a pickled Python object")
    for model in (n.removeprefix("models/").removesuffix(".json") for n in names if n.startswith("models/")):
        # What torch.export.load reads for each program, by the names it asks for.
        _check_program(f"models/{model}.json", _record(reader, f"models/{model}.json"))
        _check_saved(f"data/sample_inputs/{model}.pt", _record(reader, f"data/sample_inputs/{model}.pt"))
        _check_payloads(reader, names, "data/weights/", f"{model}_weights_config.json", model)
        _check_payloads(reader, names, "data/constants/", f"{model}_constants_config.json", model)
    for name in names:  # a second layer: every torch.save file holds tensors, whatever refers to it
        if name.endswith(".pt"):
            _check_saved(name, _record(reader, name))


def _read_zip(data: bytes, layout: re.Pattern, outside: str) -> tuple[list[str], torch._C.PyTorchFileReader]:
    """The member names below the root folder, and torch's reader, which must see the same members.

    Every member is stored (torch never compresses), named as the layout allows and unique even when
    case is ignored, as torch's lookup ignores it.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    if not infos:
        raise zipfile.BadZipFile("it is an empty zip")
    root = infos[0].filename.partition("/")[0] + "/"
    names = []
    for info in infos:
        name = info.filename.removeprefix(root)
        if name == info.filename or not layout.fullmatch(name):
            raise UnsafeArchive(f"it holds '{shown(info.filename)}', which {outside}")
        if info.compress_type != zipfile.ZIP_STORED:
            raise UnsafeArchive(f"it holds '{shown(info.filename)}' compressed, which torch never writes")
        names.append(name)
    if len({n.lower() for n in names}) != len(names):
        raise UnsafeArchive("it lists a member twice, or two whose names differ only in case (torch reads one)")
    try:
        reader = torch._C.PyTorchFileReader(io.BytesIO(data))
        records = reader.get_all_records()
    except (RuntimeError, ValueError) as exc:  # ValueError: a version record that is not text
        raise zipfile.BadZipFile(" ".join(str(exc).split())[:200]) from None
    if sorted(records) != sorted(names):
        raise UnsafeArchive("its zip directory reads differently to Python and to torch")
    return names, reader


def _record(reader: torch._C.PyTorchFileReader, name: str) -> bytes | None:
    """What torch gets when it asks for `name`; None where torch finds nothing (and fails on its own)."""
    try:
        return reader.get_record(name)
    except RuntimeError:
        return None


def _check_payloads(reader: torch._C.PyTorchFileReader, names: list[str], folder: str, config: str,
                    model: str) -> None:
    """The weights or constants torch unpickles: as a config says (`use_pickle`, the file's prefix), or all."""
    legacy = f"{folder}{model}.pt"
    if legacy in names:  # an older layout: one torch.save file of them all
        _check_saved(legacy, _record(reader, legacy))
        return
    data = _record(reader, folder + config) if folder + config in names else None
    if data is None:
        return
    for path, pickled in _payload_entries(folder + config, data):
        if folder == "data/constants/" and not path.startswith("tensor_constant"):
            kind = "a pickled Python object" if path.startswith(_OBJECT_PREFIXES) else "a constant of an unknown kind"
            raise UnsafeArchive(f"{folder}{config} names '{shown(path)}', {kind}")
        if pickled:
            _check_saved(folder + path, _record(reader, folder + path))


def _payload_entries(member: str, data: bytes) -> list[tuple[str, bool]]:
    """(file, unpickled) for each entry of a payload config; anything but `use_pickle: false` counts as pickled."""
    try:
        entries = json.loads(data)["config"].values()
        named = [(meta["path_name"], meta.get("use_pickle") is not False) for meta in entries]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise UnsafeArchive(f"{member} cannot be checked ({type(exc).__name__})") from None
    for path, _ in named:
        if not isinstance(path, str) or not _PAYLOAD_NAME.fullmatch(path):
            raise UnsafeArchive(f"{member} names a file outside its folder: '{shown(path)}'")
    return named


def _check_saved(member: str, data: bytes | None) -> None:
    """A nested `torch.save` archive, which torch unpickles: plain files and a pickle that only rebuilds tensors."""
    if data is None:
        return
    if not data.startswith(b"PK\x03\x04"):  # torch.load would unpickle it directly
        raise UnsafeArchive(f"{member} is a pickle outside a torch.save file of tensors")
    try:
        _, reader = _read_zip(data, _SAVED_MEMBERS, "torch.save does not write for tensors")
        pickled = reader.get_record("data.pkl")
    except (zipfile.BadZipFile, RuntimeError, UnsafeArchive):
        raise UnsafeArchive(f"{member} is not a plain torch.save file of tensors") from None
    _check_pickle(member, pickled)


def _check_pickle(member: str, data: bytes) -> None:
    """Refuse a pickle that names anything but the functions and classes that rebuild tensors."""
    recent: list[tuple[str, object]] = []  # the last two opcodes that are not memo bookkeeping
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                _check_global(member, *str(arg).split(" ", 1))
            elif op.name == "STACK_GLOBAL":
                if len(recent) < 2 or not all(isinstance(a, str) for _, a in recent[-2:]):
                    raise UnsafeArchive(f"{member} pickles a name it computes")
                _check_global(member, str(recent[-2][1]), str(recent[-1][1]))
            elif op.name.startswith("EXT"):
                raise UnsafeArchive(f"{member} pickles a registered extension")
            if op.name not in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                recent = [*recent[-1:], (op.name, arg if "UNICODE" in op.name or "STRING" in op.name else None)]
    except ValueError as exc:
        raise UnsafeArchive(f"{member} is a damaged pickle ('{shown(str(exc))}')") from None


def _check_global(member: str, module: str, name: str) -> None:
    if name not in SAFE_GLOBALS.get(module, ()):
        raise UnsafeArchive(f"{member} pickles '{shown(f'{module}.{name}')}'")


def _check_program(member: str, data: bytes | None) -> None:
    """An exported program: shape expressions that are arithmetic, tree specs of plain containers, nodes
    that call operators."""
    if data is None:
        return
    try:
        program = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise UnsafeArchive(f"{member} is not valid JSON ({type(exc).__name__})") from None
    stack = [program]
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack += value
        elif isinstance(value, dict):
            for key, item in value.items():
                if key == "expr_str":
                    _check_expression(member, item)
                elif key in ("in_spec", "out_spec"):
                    _check_treespec(member, item)
                elif key in ("target", "as_operator"):  # a node's function, an operator passed to one
                    _check_target(member, item)
                else:
                    stack.append(item)


def _check_target(member: str, text: object) -> None:
    """Refuse a node that would call anything but an operator or shape arithmetic.

    Resolved as torch's deserialiser resolves it (attributes of torch, operator or math by prefix), so
    `torch.os.system` is seen as what it is. A name that resolves to nothing stays a string, which
    torch refuses on its own.
    """
    if not isinstance(text, str):
        raise UnsafeArchive(f"{member} has a node target that is not text")
    if text.startswith("#"):
        raise UnsafeArchive(f"{member} calls an extension operator: '{shown(text)}'")
    prefixes = {"_operator": operator, "torch": torch, "math": math}
    target: object = next((module for prefix, module in prefixes.items() if text.startswith(prefix)), None)
    if target is None:
        return
    for name in text.split(".")[1:]:
        if name.startswith("__") or not hasattr(target, name):
            return
        target = getattr(target, name)
    if not isinstance(target, _OPERATORS) and not _is_shape_function(target):
        raise UnsafeArchive(f"{member} has a node that calls '{shown(text)}', which is not an operator")


def _is_shape_function(target: object) -> bool:
    try:
        return target in _SHAPE_FUNCTIONS
    except TypeError:  # unhashable
        return False


def _check_expression(member: str, text: object) -> None:
    """Refuse a shape expression `sympy.sympify` could evaluate into anything but arithmetic on symbols."""
    if not isinstance(text, str):
        raise UnsafeArchive(f"{member} has a shape expression that is not text")
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
                  if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER)]
    except (tokenize.TokenError, SyntaxError):
        tokens = None
    if tokens is None or not all(_plain_token(t, nxt) for t, nxt in zip(tokens, [*tokens[1:], None])):
        raise UnsafeArchive(f"{member} has a shape expression that is not plain arithmetic: '{shown(text)}'")


def _plain_token(token: tokenize.TokenInfo, following: tokenize.TokenInfo | None) -> bool:
    if token.type == tokenize.NUMBER:
        return True
    if token.type == tokenize.STRING:
        return bool(_QUOTED_NAME.fullmatch(token.string))
    if token.type == tokenize.OP:
        return token.string in _EXPRESSION_OPS
    if token.type == tokenize.NAME:
        name = token.string
        if name.startswith("_") or (keyword.iskeyword(name) and name not in ("True", "False", "None")):
            return False
        keyword_argument = following is not None and following.string == "="
        return name in _EXPRESSION_NAMES or bool(_SHAPE_SYMBOL.fullmatch(name)) or keyword_argument
    return False


def _check_treespec(member: str, text: object) -> None:
    """Refuse a tree spec that makes torch import a module: a defaultdict's factory, an enum."""
    try:
        stack = [json.loads(text)[1]]
        while stack:
            node = stack.pop()
            if node["type"] not in _TREE_TYPES:
                raise UnsafeArchive(f"{member} has inputs or outputs of type '{shown(str(node['type']))}'")
            context = node["context"]
            if isinstance(context, str) and "__enum__" in _keys(json.loads(context)):
                raise UnsafeArchive(f"{member} has inputs or outputs keyed by an enum")
            stack += node["children_spec"]
    except (ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        raise UnsafeArchive(f"{member} has a tree spec that cannot be checked ({type(exc).__name__})") from None


def _keys(value: object) -> set[str]:
    """Every dict key anywhere in a JSON value."""
    keys: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            keys |= set(item)
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    return keys
