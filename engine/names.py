"""Names from outside (files, folders, classes, layers) as text that can always be shown and written."""

from __future__ import annotations

import unicodedata

REPLACEMENT = "\ufffd"


def readable(name: str) -> str:
    """`name` with what cannot be shown replaced by U+FFFD, one character for one.

    Bytes of a file name that are not UTF-8 reach Python as lone surrogates
    (`os.fsdecode`), which no UTF-8 file or terminal accepts; control characters
    (newlines, tabs, escape sequences) would break a line, a table or the terminal.
    """
    if name.isprintable():  # the common case, checked in C
        return name
    return "".join(REPLACEMENT if unicodedata.category(c) in ("Cs", "Cc") else c for c in name)
