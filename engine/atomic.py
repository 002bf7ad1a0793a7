"""Writing a file or a folder whole: under a hidden name beside it, renamed into place at the end.

A crash or an error while writing never leaves half a file (a report, a pruned
model, the configuration): what was there stays, or nothing appears.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged(
    target: Path, *, folder: bool = False, tag: str = "tmp", rename: Callable[[Path, Path], None] = os.replace
) -> Iterator[Path]:
    """A new hidden path beside `target` to write (with `folder`, an empty folder to fill), renamed to `target`
    when the block ends, and removed if the block fails.

    `tag` marks the hidden name (`.NAME.TAG-xxxxxxxx`), so leftovers can be found; `rename`
    replaces `os.replace` where moving into place needs more (a report folder sets the old one aside).
    """
    path = target.with_name(f".{target.name}.{tag}-{secrets.token_hex(4)}")
    if folder:
        path.mkdir()
    try:
        yield path
        rename(path, target)
    except BaseException:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        raise
