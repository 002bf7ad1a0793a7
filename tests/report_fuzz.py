"""Seeded mutations of a genuine report folder, and what reading one must do (tests/test_untrusted_reports.py and
benchmarks/fuzz_reports.py use it).

A report folder may come from anyone. A case is a copy of a genuine report with one to three mutations:
report.json's values swapped for other JSON, huge, non-finite, deeply nested or marked-up ones, keys removed or
added, names renamed everywhere to hold terminal escapes, bidi controls or Rich markup; maps.npz replaced, cut
short, holding a pickle that would make a canary folder, keys renamed, arrays of other shapes and types; the CSV
files' cells and rows; files and images/ entries replaced by links (outside, in loops), folders, other bytes, or
nothing. Reading it (`open_report`, `semiotui open`, `semiotui compare` beside the genuine report) either
succeeds or refuses it with one short line holding no control character; the canary never appears.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pickle
import random
import shutil
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from helpers import interface_stub, report_args, write_tiny_inputs

from semiotui.engine.comparison import compare
from semiotui.engine.errors import SemiotuiError
from semiotui.engine.saved import open_report
from semiotui.tui.cli import main

MAX_LINE = 400  # characters of the one line a refused report gets
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
HOSTILE_TEXT = ("\x1b]0;T\x07", "\x1b[2J", "\u202e", "\u2066", "[red]", "[/]", "[bold]x[/bold]", "\n", "\r\n",
                "\t", "\x00", "\x7f", "\x85", "\u2028", "\ud800", "é", "/", "../", "#", ",", '"', "=1+1")
HUGE = 1 << 20  # characters of a huge string (a few MB once escaped)
# Written into report.json as their text, which json.dumps cannot make (too deep, too many digits) or takes long to.
DEEP, HUGE_INT, HUGE_LIST = "@@deep@@", "@@huge-int@@", "@@huge-list@@"
RAW = {DEEP: "[" * 100_000 + "]" * 100_000, HUGE_INT: "9" * 5000, HUGE_LIST: "[" + "1," * (HUGE // 8) + "1]"}


class MakesCanary:
    """Unpickling it calls os.mkdir(path): whatever reads it ran code from the report."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def genuine_report(folder: Path) -> Path:
    """A report of TinyNet on six 16x16 images, the maps of two drawn, with a control of two networks; the first
    file, unreadable, is skipped."""
    folder.mkdir(parents=True, exist_ok=True)
    inputs = write_tiny_inputs(folder, images=6, size=16, classes=2)
    (inputs / "images" / "c0" / "0.png").write_text("not an image")
    control = ("--control-draws", "2", "--control-images", "4")
    arguments = [a for a in report_args(inputs, folder / "report", "--maps", "2", *control) if a != "--no-control"]
    with contextlib.redirect_stderr(io.StringIO()) as err:
        status = main(arguments)
    assert status == 0, err.getvalue()
    return folder / "report"


def hostile_text(rng: random.Random) -> str:
    return "".join(rng.choice(HOSTILE_TEXT) for _ in range(rng.randint(1, 3)))


def hostile_value(rng: random.Random) -> object:
    """A JSON value where report.json has another: of another type, huge, not finite, marked up, deep."""
    return rng.choice([
        None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63), 10**30, -(10**30), HUGE_INT, 1e308, -1e308, 5e-324,
        0.5, -0.5, float("nan"), float("inf"), float("-inf"), "", "x", hostile_text(rng), "x" * HUGE,
        hostile_text(rng) * (HUGE // 4), [], {}, [None], [hostile_text(rng)], {"": None}, {hostile_text(rng): 1},
        DEEP, HUGE_LIST,
    ])


# report.json


def _own(path: Path) -> Path:
    """`path`, a file of the report's own to mutate: not a link or a sparse terabyte (as an earlier mutation may
    have made it)."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 26:
        raise FileNotFoundError(f"{path.name} is no longer a file of the report's size")
    return path


def _load_json(folder: Path) -> object:
    return json.loads(_own(folder / "report.json").read_text(encoding="utf-8"))


def _save_json(folder: Path, data: object) -> None:
    text = json.dumps(data)
    for mark, raw in RAW.items():
        text = text.replace(json.dumps(mark), raw)
    (folder / "report.json").write_text(text, encoding="utf-8")


def _place(data: object, rng: random.Random) -> list:
    """The keys to a random value in report.json's `data` ([]: the whole), each level left with chance 0.7."""
    keys: list = []
    node = data
    while isinstance(node, (dict, list)) and node and (not keys or rng.random() < 0.7):
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        keys.append(key)
        node = node[key]
    return keys


def _strings(node: object, keys: tuple = ()) -> Iterator[list]:
    """The keys to every string in report.json's `node`."""
    if isinstance(node, str):
        yield list(keys)
    for key, value in _items(node):
        yield from _strings(value, (*keys, key))


def _containers(node: object, keys: tuple = ()) -> Iterator[list]:
    """The keys to every object and list in report.json's `node`, itself included."""
    if isinstance(node, (dict, list)):
        yield list(keys)
    for key, value in _items(node):
        yield from _containers(value, (*keys, key))


def _items(node: object) -> Iterator[tuple[object, object]]:
    return iter(node.items()) if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else iter(())


def json_value(folder: Path, rng: random.Random, canary: Path) -> str:
    data = _load_json(folder)
    keys = _place(data, rng)
    value = hostile_value(rng)
    if keys:
        _set(data, keys, value)
    _save_json(folder, data if keys else value)
    return f"{_path(keys)} = {_short(value)}"


def json_drop(folder: Path, rng: random.Random, canary: Path) -> str:
    data = _load_json(folder)
    keys = _place(data, rng)[:-1]  # to the container of a random value
    container = _at(data, keys)
    key = rng.choice(list(container)) if isinstance(container, dict) else rng.randrange(len(container))
    del container[key]
    _save_json(folder, data)
    return f"{_path([*keys, key])} removed"


def json_extra(folder: Path, rng: random.Random, canary: Path) -> str:
    data = _load_json(folder)
    keys = rng.choice([keys for keys in _containers(data) if isinstance(_at(data, keys), dict)])
    name = rng.choice(["files", "normalized", "count_empty", "parent", "inputs", "empty", "top5", "rows", "total",
                       "classes", "scores", hostile_text(rng), "x" * HUGE])
    value = hostile_value(rng)
    _at(data, keys)[name] = value
    _save_json(folder, data)
    return f"{_path(keys)}/{_short(name)} added = {_short(value)}"


def json_text(folder: Path, rng: random.Random, canary: Path) -> str:
    data = _load_json(folder)
    keys = rng.choice(list(_strings(data)))
    text = _at(data, keys)
    at = rng.randint(0, len(text))
    inserted = hostile_text(rng) if rng.random() < 0.8 else "x" * HUGE
    _set(data, keys, text[:at] + inserted + text[at:])
    _save_json(folder, data)
    return f"{_path(keys)} += {_short(inserted)}"


def json_bytes(folder: Path, rng: random.Random, canary: Path) -> str:
    path = folder / "report.json"
    genuine = _own(path).read_bytes()
    how = rng.choice(["cut", "empty", "garbage", "not UTF-8", "BOM", "a list", "a number", "null", "deep",
                      "a pickle"])
    path.write_bytes({
        "cut": genuine[: rng.randrange(len(genuine))], "empty": b"", "garbage": rng.randbytes(rng.randint(1, 4096)),
        "not UTF-8": b"\xff\xfe" + genuine, "BOM": b"\xef\xbb\xbf" + genuine, "a list": b"[]", "a number": b"1e999",
        "null": b"null", "deep": RAW[DEEP].encode(), "a pickle": pickle.dumps(MakesCanary(canary)),
    }[how])
    return how


def _at(data: object, keys: list) -> object:
    for key in keys:
        data = data[key]
    return data


def _set(data: object, keys: list, value: object) -> None:
    _at(data, keys[:-1])[keys[-1]] = value


def _path(keys: list) -> str:
    return "/" + "/".join(_short(str(key), 40) for key in keys)


# A name renamed wherever the report holds it: report.json, the CSV files, maps.npz's keys


def rename(folder: Path, rng: random.Random, canary: Path) -> str:
    """An image's path or a layer's name made hostile everywhere at once, so the report may still be read."""
    data = _load_json(folder)
    kind = rng.choice(["image", "layer"])
    old = rng.choice([image["path"] for image in data["images"]] if kind == "image"
                     else [layer["name"] for layer in data["layers"]])
    huge = HUGE if kind == "image" else 60_000  # a zip member's name has at most 65,535 bytes
    new = old + hostile_text(rng) if rng.random() < 0.8 else old + "x" * huge
    _save_json(folder, _renamed(data, old, new))
    for name in ("entropy.csv", "control.csv"):
        if (folder / name).is_file() and not (folder / name).is_symlink():
            rows = _read_csv(folder / name)
            _write_csv(folder / name, [[new if cell == old else cell for cell in row] for row in rows])
    if kind == "layer":
        members = _members(folder / "maps.npz")
        _write_members(folder / "maps.npz", {_renamed_key(key, old, new): raw for key, raw in members.items()})
    return f"{kind} {_short(old)} renamed {_short(new)}"


def _renamed(node: object, old: str, new: str) -> object:
    if isinstance(node, str):
        return new if node == old else node
    if isinstance(node, list):
        return [_renamed(v, old, new) for v in node]
    if isinstance(node, dict):
        return {k: _renamed(v, old, new) for k, v in node.items()}
    return node


def _renamed_key(member: str, old: str, new: str) -> str:
    image, _, layer = member.removesuffix(".npy").partition("/")
    return f"{image}/{new}.npy" if layer == old else member


# maps.npz


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(_own(path)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _write_members(path: Path, members: dict[str, bytes] | list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a name written twice, on purpose
        for name, raw in members.items() if isinstance(members, dict) else members:
            archive.writestr(name, raw)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npz_bytes(folder: Path, rng: random.Random, canary: Path) -> str:
    path = folder / "maps.npz"
    genuine = _own(path).read_bytes()
    how = rng.choice(["cut", "empty", "garbage", "a pickle", "an .npy", "an empty zip", "a pickled object array"])
    if how == "an empty zip":
        _write_members(path, {})
    elif how == "a pickled object array":  # np.savez of an object array: what np.load(allow_pickle=True) unpickles
        np.savez(path, **{"0/input": np.array([MakesCanary(canary)], dtype=object)})
    else:
        path.write_bytes({"cut": genuine[: rng.randrange(len(genuine))], "empty": b"",
                          "garbage": rng.randbytes(rng.randint(1, 4096)), "a pickle": pickle.dumps(MakesCanary(canary)),
                          "an .npy": _npy(np.zeros((16, 16, 3), np.uint8))}[how])
    return how


def npz_member(folder: Path, rng: random.Random, canary: Path) -> str:
    path = folder / "maps.npz"
    members = list(_members(path).items())
    k = rng.randrange(len(members))
    name, raw = members[k]
    how = rng.choice(["renamed", "removed", "doubled", "object array", "float32", "float64", "int64", "0-d", "1-d",
                      "3-d", "empty", "huge shape", "NaN", "inf", "fortran", "big-endian", "structured",
                      "version 3", "garbage", "cut"])
    if how == "renamed":
        image, _, layer = name.removesuffix(".npy").partition("/")
        members[k] = (rng.choice([f"{image}/{hostile_text(rng)}", "999/input", "-1/input", f"{image}", "x",
                                  f"../{name}", f"{name}/x", f"{image}/{layer}/{layer}", f"{image}/" + "y" * 60_000,
                                  f"{image}{hostile_text(rng)}/{layer}", f"０/{layer}", f"{image}/input"]) + ".npy", raw)
    elif how == "removed":
        del members[k]
    elif how == "doubled":
        members.append((name, raw))
    else:
        array = np.lib.format.read_array(io.BytesIO(raw))
        members[k] = (name, _changed_array(array, how, rng, canary))
    _write_members(path, members)
    return f"{_short(name)} {how}"


def _changed_array(array: np.ndarray, how: str, rng: random.Random, canary: Path) -> bytes:
    if how == "object array":
        return _npy(np.array([MakesCanary(canary)] * 2, dtype=object))
    if how in ("float32", "float64", "int64"):
        return _npy(array.astype(how))
    if how == "0-d":
        return _npy(np.array(array.flat[0]))
    if how == "1-d":
        return _npy(array.ravel())
    if how == "3-d":
        return _npy(array.reshape(1, *array.shape))
    if how == "empty":
        return _npy(np.zeros((0, *array.shape[1:]), array.dtype))
    if how in ("NaN", "inf"):
        with np.errstate(invalid="ignore"):  # NaN cast to a picture's uint8, on purpose
            return _npy(np.full(array.shape, np.nan if how == "NaN" else np.inf, array.dtype))
    if how == "fortran":
        return _npy(np.asfortranarray(array.T.copy()))
    if how == "big-endian":
        return _npy(array.astype(array.dtype.newbyteorder(">")))
    if how == "structured":
        return _npy(np.zeros(array.shape[:1], dtype=[("a", "f2"), ("b", "O")]))
    buffer = io.BytesIO()
    if how == "huge shape":
        np.lib.format.write_array_header_2_0(buffer, {"descr": array.dtype.str, "fortran_order": False,
                                                       "shape": (1 << rng.randint(20, 62),) + array.shape[1:]})
        buffer.write(array.tobytes())
        return buffer.getvalue()
    if how == "version 3":
        raw = _npy(array)
        return raw[:6] + b"\x03\x00" + raw[8:]
    raw = _npy(array)
    if how == "garbage":
        return rng.randbytes(len(raw))
    return raw[: rng.randrange(len(raw))]  # cut


# entropy.csv and control.csv


def _read_csv(path: Path) -> list[list[str]]:
    with _own(path).open(newline="", encoding="utf-8", errors="surrogatepass") as f:
        return list(csv.reader(f))


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as f:
        csv.writer(f).writerows(rows)


def csv_cell(folder: Path, rng: random.Random, canary: Path) -> str:
    path = folder / rng.choice(["entropy.csv", "control.csv"])
    rows = _read_csv(path)
    r = rng.randrange(len(rows))
    c = rng.randrange(len(rows[r]))
    value = rng.choice(["nan", "inf", "-inf", "1e400", "-1", "1e-400", "", " ", "0x10", "1_0", "9" * 5000, "1e308",
                        "-0", "NaN", hostile_text(rng), "x" * 200_000, "=cmd|' /C calc'!A0"])
    rows[r][c] = value
    _write_csv(path, rows)
    return f"{path.name} row {r} column {c} = {_short(value)}"


def csv_rows(folder: Path, rng: random.Random, canary: Path) -> str:
    path = folder / rng.choice(["entropy.csv", "control.csv"])
    rows = _read_csv(path)
    how = rng.choice(["row removed", "row doubled", "column removed", "cell added", "header only", "emptied",
                      "NUL", "not UTF-8", "cut"])
    r = rng.randrange(len(rows))
    if how == "row removed":
        del rows[r]
    elif how == "row doubled":
        rows.insert(r, list(rows[r]))
    elif how == "column removed":
        rows = [row[:-1] for row in rows]
    elif how == "cell added":
        rows[r].append("1.0")
    elif how == "header only":
        rows = rows[:1]
    elif how == "emptied":
        rows = []
    if how in ("NUL", "not UTF-8", "cut"):
        text = _own(path).read_bytes()
        at = rng.randrange(len(text))
        path.write_bytes({"NUL": text[:at] + b"\x00" + text[at:], "not UTF-8": text[:at] + b"\xff" + text[at:],
                          "cut": text[:at]}[how])
    else:
        _write_csv(path, rows)
    return f"{path.name} {how}"


# Files and folders


def file_swapped(folder: Path, rng: random.Random, canary: Path) -> str:
    """A file of the report, or an entry of its images/, replaced by nothing, a folder, a link or other bytes."""
    images = sorted((folder / "images").iterdir()) if (folder / "images").is_dir() else []
    names = ["report.json", "entropy.csv", "control.csv", "maps.npz", "images", *(p.name for p in images)]
    name = rng.choice(names)
    path = folder / name if name in names[:5] else folder / "images" / name
    outside = folder.parent / "outside.txt"
    outside.write_text("a file outside the report\n")
    how = rng.choice(["removed", "a folder", "a link outside", "a link to itself", "two links in a loop",
                      "a dangling link", "a link to /dev/zero", "a link to the folder above", "text",
                      "a sparse terabyte"])
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if how == "a folder":
        path.mkdir()
        (path / "inside.txt").write_text("x")
    elif how == "a link outside":
        path.symlink_to(outside)
    elif how == "a link to itself":
        path.symlink_to(path.name)
    elif how == "two links in a loop":
        other = path.with_name(path.name + ".loop")
        other.symlink_to(path.name)
        path.symlink_to(other.name)
    elif how == "a dangling link":
        path.symlink_to(folder.parent / "nowhere")
    elif how == "a link to /dev/zero":
        path.symlink_to("/dev/zero")
    elif how == "a link to the folder above":
        path.symlink_to(folder.parent)
    elif how == "text":
        path.write_text("not what semiotui writes\n")
    elif how == "a sparse terabyte":  # no disk taken, as an archive can unpack it
        path.touch()
        os.truncate(path, 1 << 40)
    return f"{path.relative_to(folder)} {how}"


MUTATIONS: dict[str, Callable[[Path, random.Random, Path], str]] = {
    "json value": json_value,
    "json key removed": json_drop,
    "json key added": json_extra,
    "json text": json_text,
    "json bytes": json_bytes,
    "renamed everywhere": rename,
    "maps.npz bytes": npz_bytes,
    "maps.npz member": npz_member,
    "csv cell": csv_cell,
    "csv rows": csv_rows,
    "file swapped": file_swapped,
}


# A case, and what reading it must do


@dataclass
class Outcome:
    number: int
    mutations: list[str]
    read: bool = False  # open_report accepted the folder
    failures: list[str] = field(default_factory=list)


def run_case(genuine: Path, base: Path, seed: int, number: int) -> Outcome:
    """Case `number` of `seed`: a mutated copy of `genuine` under `base`, read three ways, then removed."""
    rng = random.Random(f"{seed}:{number}")
    place = base / f"case{number}"
    place.mkdir()
    folder, canary = place / "report", place / "canary"
    shutil.copytree(genuine, folder, symlinks=True)
    outcome = Outcome(number, [])
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        name = rng.choice(list(MUTATIONS))
        try:
            outcome.mutations.append(f"{name}: {MUTATIONS[name](folder, rng, canary)}")
        except (OSError, ValueError, KeyError, IndexError, TypeError, zipfile.BadZipFile, csv.Error,
                RecursionError, EOFError) as exc:  # an earlier mutation left nothing this one can change
            outcome.mutations.append(f"{name}: not applicable ({type(exc).__name__})")
    a, b = (folder, genuine) if number % 2 == 0 else (genuine, folder)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        outcome.read = _read(a, b, outcome)
        _command(["open", str(folder)], outcome, read=outcome.read)
        _command(["compare", str(a), str(b), "-o", str(place / "cmp")], outcome)
    outcome.failures += [f"warned: {_short(str(w.message))}" for w in warned]
    if canary.exists():
        outcome.failures.append("the canary folder was made: code from the report ran")
    shutil.rmtree(place)
    return outcome


def _read(a: Path, b: Path, outcome: Outcome) -> bool:
    """Whether the engine reads the mutated one of `a` and `b`; read, the two are compared as `semiotui compare` does."""
    try:
        sides = [open_report(a), open_report(b)]
    except SemiotuiError as exc:
        outcome.failures += [f"open_report: {fault}" for fault in line_faults(str(exc))]
        return False
    except Exception as exc:  # noqa: BLE001: any other exception is the failure being looked for
        outcome.failures.append(f"open_report raised {type(exc).__name__}: {_short(str(exc))}")
        return False
    try:
        compare(*(side.result for side in sides), ("a", "b"), tuple(side.info.parameters for side in sides)).summary()
    except SemiotuiError as exc:
        outcome.failures += [f"compare: {fault}" for fault in line_faults(str(exc))]
    except Exception as exc:  # noqa: BLE001
        outcome.failures.append(f"compare raised {type(exc).__name__}: {_short(str(exc))}")
    return True


def _command(arguments: list[str], outcome: Outcome, read: bool | None = None) -> None:
    """Run `semiotui ARGUMENTS` (the interface stubbed): exit 0, or 1 with one short clean line."""
    from semiotui.tui import app

    run_app, app.run_app = app.run_app, interface_stub([])
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
            status = main(arguments)
    except BaseException as exc:  # noqa: BLE001
        outcome.failures.append(f"{arguments[0]} raised {type(exc).__name__}: {_short(str(exc))}")
        return
    finally:
        app.run_app = run_app
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    where = arguments[0]
    if status not in (0, 1) or (read is not None and status != (0 if read else 1)):
        outcome.failures.append(f"{where} exited {status} (read by open_report: {read}): {_short(err.getvalue())}")
    elif status == 1 and (len(lines) != 1 or not lines[0].startswith("semiotui: error: ")):
        outcome.failures.append(f"{where} printed {len(lines)} lines: {_short(err.getvalue())}")
    elif status == 1:
        outcome.failures += [f"{where}: {fault}" for fault in line_faults(lines[0])]
    else:
        outcome.failures += [f"{where}: {fault}" for line in lines for fault in line_faults(line, bounded=False)]


def line_faults(line: str, *, bounded: bool = True) -> list[str]:
    """What is wrong with a line a user reads: a line break, more than MAX_LINE characters, a control character."""
    faults = []
    if "\n" in line or "\r" in line:
        faults.append(f"a line break in {_short(line)}")
    if bounded and len(line) > MAX_LINE:
        faults.append(f"{len(line)} characters: {_short(line)}")
    bad = sorted({c for c in line if c in BIDI or unicodedata.category(c) in ("Cc", "Cs")})
    if bad:
        faults.append(f"{ascii(''.join(bad))} in {_short(line)}")
    return faults


def _short(value: object, limit: int = 120) -> str:
    text = ascii(value) if not isinstance(value, str) else ascii(value)[1:-1]
    return text[:limit] + (f"... ({len(text)} characters)" if len(text) > limit else "")
