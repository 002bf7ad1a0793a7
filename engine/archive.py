"""Checking that a torch.export archive (.pt2) runs no code when torch loads it.

`torch.export.load` unpickles parts of the archive (pickled weights and
constants, the sample inputs, opaque objects), reads shape expressions with
`sympy.sympify` (which evaluates Python) and imports the modules that some
tree specs name. A genuine archive of an ordinary model needs none of that
power: its pickles rebuild tensors, its expressions are arithmetic on shape
symbols. `check_archive` reads every member with the standard library only
and refuses anything outside those limits; the caller then loads only
archives that passed, or that the user trusts.
"""

from __future__ import annotations

import io
import json
import keyword
import pickletools
import re
import tokenize
import zipfile
from pathlib import Path

import torch


class UnsafeArchive(Exception):
    """Something in a .pt2 that could run code when torch loads it; the message says what and where."""


# What a pickle inside may name: the functions and classes that rebuild tensors.
_STORAGES = ("Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
             "ComplexDouble", "ComplexFloat")
_DTYPES = {name for name, value in vars(torch).items() if isinstance(value, torch.dtype)}
SAFE_GLOBALS = {
    "collections": {"OrderedDict"},
    "torch._utils": {"_rebuild_tensor_v2", "_rebuild_parameter"},
    "torch": {"Size", "device", *(f"{kind}Storage" for kind in _STORAGES), *_DTYPES},
}

# Members of the archive, below its root folder, and of a torch.save archive nested in it.
_MEMBERS = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|models/[\w.-]+\.json"
    r"|data/(weights|constants)/[\w.-]+|data/sample_inputs/[\w.-]+\.pt|extra/[\w./-]+"
)
_SAVED_MEMBERS = re.compile(r"data\.pkl|\.format_version|\.storage_alignment|byteorder|version|\.data/version"
                            r"|\.data/serialization_id|data/\d+")
_OBJECT_PREFIXES = ("custom_obj_", "opaque_obj_")  # Python or TorchScript objects, always unpickled

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


def check_archive(path: str | Path) -> None:
    """Raise `UnsafeArchive` if loading `path` with `torch.export.load` could run code from it."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if len(set(names)) != len(names):
            raise UnsafeArchive("it lists a member twice (torch and Python could read different ones)")
        root = names[0].partition("/")[0] + "/" if names else ""
        for name in names:
            member = name.removeprefix(root)
            if member == name or not _MEMBERS.fullmatch(member):
                raise UnsafeArchive(f"it holds {name}, which torch.export.save does not write for a model")
        members = {name.removeprefix(root): archive.read(name) for name in names}
    pickled = {m for m in members if m.startswith("data/sample_inputs/") or m.endswith(".pt")}
    for member, data in members.items():
        if member.startswith("models/"):
            _check_program(member, data)
        elif member.endswith("_config.json"):
            pickled |= _pickled_payloads(member, data)
        elif member.rpartition("/")[2].startswith(_OBJECT_PREFIXES):
            raise UnsafeArchive(f"{member} is a pickled Python object")
    for member, data in members.items():
        if member in pickled:
            _check_saved(member, data)


def _pickled_payloads(member: str, data: bytes) -> set[str]:
    """The weights or constants a payload config says torch unpickles (`use_pickle`)."""
    folder = member.rpartition("/")[0]
    try:
        config = json.loads(data)["config"]
        return {f"{folder}/{meta['path_name']}" for meta in config.values() if meta.get("use_pickle")}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UnsafeArchive(f"{member} cannot be checked ({type(exc).__name__})") from None


def _check_saved(member: str, data: bytes) -> None:
    """A nested `torch.save` archive, which torch unpickles: plain files and a pickle that only rebuilds tensors."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as saved:
            names = [n for n in saved.namelist() if not n.endswith("/")]
            root = names[0].partition("/")[0] + "/" if names else ""
            inner = [n.removeprefix(root) for n in names]
            if len(set(inner)) != len(inner) or not all(_SAVED_MEMBERS.fullmatch(n) for n in inner):
                raise UnsafeArchive(f"{member} is not a plain torch.save file of tensors")
            _check_pickle(member, saved.read(root + "data.pkl"))
    except (zipfile.BadZipFile, KeyError):
        raise UnsafeArchive(f"{member} is a pickle outside a torch.save file of tensors") from None


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
        raise UnsafeArchive(f"{member} is a damaged pickle ({exc})") from None


def _check_global(member: str, module: str, name: str) -> None:
    if name not in SAFE_GLOBALS.get(module, ()):
        raise UnsafeArchive(f"{member} pickles {module}.{name}")


def _check_program(member: str, data: bytes) -> None:
    """An exported program: shape expressions that are arithmetic, tree specs of plain containers."""
    try:
        program = json.loads(data)
    except ValueError as exc:
        raise UnsafeArchive(f"{member} is not valid JSON ({exc})") from None
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
                else:
                    stack.append(item)


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
        raise UnsafeArchive(f"{member} has a shape expression that is not plain arithmetic: {text[:80]!r}")


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
                raise UnsafeArchive(f"{member} has inputs or outputs of type {node['type']}")
            context = node["context"]
            if isinstance(context, str) and "__enum__" in _keys(json.loads(context)):
                raise UnsafeArchive(f"{member} has inputs or outputs keyed by an enum")
            stack += node["children_spec"]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
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
