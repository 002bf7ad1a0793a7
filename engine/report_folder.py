"""The folder a report goes into: checked before any analysis, claimed for one run, swapped in whole.

A report is built in a hidden staging folder beside its destination and renamed
into place at the end. The destination is checked before the analysis starts
and claimed with a lock file beside it (an `flock`, which the system releases
when the process dies, however it dies), so two runs never write one folder.
Replacing (`force`) only ever removes a folder that holds a semiotui report
and nothing else (nothing but the files its report.json lists, where it lists
them), and never one that is or holds an input of the run, the
current folder or the home folder. What a killed run leaves beside the
destination (its staging or set-aside folders) is removed by the next run that
takes the lock.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import secrets
import shutil
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

from .atomic import staged
from .errors import MissingPath, PathInTheWay

REPORT_FILES = {"report.html", "report.md", "report.json", "entropy.csv", "control.csv", "maps.npz", "screenshot.svg"}
IMAGE_SUFFIXES = {".png", ".svg"}  # what a report's images/ folder holds
_MARK = "semiotui"  # in the hidden names beside a destination: .NAME.semiotui-lock, -new-*, -old-*


class NeedsForce(PathInTheWay):
    """The folder exists and is not empty: only `force` may replace it (if it holds a report)."""


class ReportClaim:
    """A report folder this process may write, locked against other runs until `release` (or the `with` ends)."""

    def __init__(self, target: Path, force: bool, inputs: list[Path], lock: int) -> None:
        self.target = target
        self.force = force
        self.inputs = inputs
        self._lock = lock

    def __enter__(self) -> ReportClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._lock >= 0:
            _unlock(self.target, self._lock)
            self._lock = -1

    def staging(self) -> AbstractContextManager[Path]:
        """A new hidden folder beside the destination to build the report in, swapped in when the block ends."""
        return staged(self.target, folder=True, tag=f"{_MARK}-new", rename=self._swap_in)

    def _swap_in(self, staging: Path, target: Path) -> None:
        """Rename the finished `staging` to the destination, checking again what is there now.

        An absent or empty destination is replaced by the rename itself (which fails if
        files appeared in it); a report being replaced is moved aside first and removed
        only once the new one is in place.
        """
        staging.chmod(0o755)
        if _is_full_folder(target):
            _check_replaceable(target, self.force, self.inputs)
            old = target.with_name(f".{target.name}.{_MARK}-old-{secrets.token_hex(4)}")
            target.rename(old)
            try:
                _check_report(old, target)  # nothing was added while it was checked
                staging.rename(target)
            except BaseException:
                old.rename(target)
                raise
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            staging.rename(target)
        except OSError as exc:
            raise PathInTheWay(f"{target} appeared while the report was written ({exc.strerror or exc}); "
                               "nothing was replaced: choose another folder") from None


def check_report_folder(directory: str | Path, *, force: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """The report folder as a path, or an error saying why a report cannot be written (or replaced) there."""
    target = Path(directory).expanduser()
    _check_not_special(target)
    parent = target.absolute().parent
    if not parent.exists():
        raise MissingPath(f"cannot write {target}: the folder {parent} does not exist")
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {target}: {parent} is not a folder")
    if target.is_symlink():
        raise PathInTheWay(f"{target} is a link; name the folder itself, or a new one")
    if target.exists() and not target.is_dir():
        raise PathInTheWay(f"{target} is a file, not a folder; choose another name")
    if _is_full_folder(target):
        _check_replaceable(target, force, _resolved(inputs))
    return target


def claim_report_folder(
    directory: str | Path, *, force: bool = False, inputs: Iterable[str | Path] = ()
) -> ReportClaim:
    """Check the report folder and lock it for this run; remove what killed runs left beside it."""
    sources = _resolved(inputs)
    target = check_report_folder(directory, force=force, inputs=sources)
    claim = ReportClaim(target, force, sources, _lock(target))
    try:
        _clear_leftovers(target)
    except BaseException:
        claim.release()
        raise
    return claim


def _check_not_special(target: Path) -> None:
    """Never the current folder, the home folder, or a folder holding either (such as / or ..)."""
    where = target.resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if where == cwd:
        raise PathInTheWay(f"{target} is the current folder; a report needs a folder of its own, "
                           f"e.g. {Path(target, 'report')}")
    for folder, name in ((cwd, "the current folder"), (home, "your home folder")):
        if folder.is_relative_to(where):
            raise PathInTheWay(f"{target} is or holds {name}; a report needs a folder of its own: "
                               "name a new one")


def _check_replaceable(target: Path, force: bool, inputs: list[Path]) -> None:
    """A folder with files in it is replaced only with `force`, only if it is a report, and never an input."""
    if not force:
        raise NeedsForce(f"{target} already exists; choose another folder or pass `force` to replace a report folder")
    _check_not_input(target, inputs)
    _check_report(target, target)


def _check_not_input(target: Path, inputs: list[Path]) -> None:
    where = target.resolve()
    for path in inputs:
        if path.is_relative_to(where):
            raise PathInTheWay(f"{target} is or holds {path}, an input of this run; it is never replaced: "
                               "choose another folder for the report")


def report_files(staging: Path) -> list[str]:
    """The files of the report being built in `staging`, and its report.json: what report.json lists (`files`),
    so that `force` replaces them and nothing someone put beside them."""
    return sorted({*(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()), "report.json"})


def _check_report(folder: Path, shown: Path) -> None:
    """`folder` holds a semiotui report (its report.json says so) and nothing semiotui does not write.

    A report.json that lists its files (`report_files`) says which those are; one written before reports
    listed them is taken to hold what semiotui may write.
    """
    try:
        data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        ours = isinstance(data, dict) and isinstance(data.get("semiotui"), str)
    except (OSError, ValueError, RecursionError):
        ours = False
    if not ours:
        raise PathInTheWay(f"{shown} is not a semiotui report folder (no report.json written by semiotui); "
                           "only a report folder is replaced: choose another folder")
    files = data.get("files")
    listed = set(files) if isinstance(files, list) and all(isinstance(f, str) for f in files) else None

    def written(path: Path) -> bool:
        return listed is None or path.relative_to(folder).as_posix() in listed

    for entry in folder.iterdir():
        images = entry.name == "images" and entry.is_dir() and not entry.is_symlink()
        others = [] if not images else [p for p in entry.iterdir() if p.suffix not in IMAGE_SUFFIXES
                                        or not p.is_file() or p.is_symlink() or not written(p)]
        if (not images and (entry.name not in REPORT_FILES or not written(entry))) or others:
            extra = (others or [entry])[0]
            raise PathInTheWay(f"{shown} holds {extra.relative_to(folder)}, which semiotui does not write; "
                               "it replaces only a report folder of its own: move that file or choose "
                               "another folder")


def _is_full_folder(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _resolved(paths: Iterable[str | Path]) -> list[Path]:
    return [Path(p).expanduser().resolve() for p in paths]


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.{_MARK}-lock"


def _lock(target: Path) -> int:
    """Hold the lock of `target` (an flock on a file beside it, with this process's id in it for people)."""
    path = _lock_path(target)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise PermissionError(f"cannot write into {target.parent}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PathInTheWay(f"another semiotui is writing a report into {target} now; wait for it to "
                               "finish or choose another folder") from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # its holder removed that file as we opened it: lock the new one


def _unlock(target: Path, fd: int) -> None:
    _lock_path(target).unlink(missing_ok=True)  # while still held, so no one locks a removed file
    os.close(fd)


def _clear_leftovers(target: Path) -> None:
    """Staging folders of killed runs into `target`; a report a killed run had set aside is put back."""
    parent, name = target.parent, glob.escape(target.name)
    for old in sorted(parent.glob(f".{name}.{_MARK}-old-*")):
        if not target.exists() and not target.is_symlink():
            old.rename(target)  # killed between moving the old report aside and renaming the new one in
        else:
            shutil.rmtree(old, ignore_errors=True)
    for staging in parent.glob(f".{name}.{_MARK}-new-*"):
        shutil.rmtree(staging, ignore_errors=True)
