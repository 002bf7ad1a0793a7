"""Names from outside (files, folders, classes, layers) as text that can always be shown and written."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from html import escape

REPLACEMENT = "\ufffd"
# Bidirectional controls: embeddings, overrides, isolates and marks reorder what follows them on screen.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def readable(name: str) -> str:
    """`name` with what cannot be shown replaced by U+FFFD, one character for one.

    Bytes of a file name that are not UTF-8 reach Python as lone surrogates
    (`os.fsdecode`), which no UTF-8 file or terminal accepts; control characters
    (newlines, tabs, escape sequences) would break a line, a table or the terminal;
    bidi controls (U+202E) would show a name other than it is ("gnp.exe" as "exe.png").
    """
    if name.isprintable():  # the common case, checked in C (bidi controls are not printable)
        return name
    return "".join(REPLACEMENT if c in BIDI_CONTROLS or unicodedata.category(c) in ("Cs", "Cc") else c for c in name)


def html_text(text: str) -> str:
    """`text` as HTML or SVG text: `readable`, with `& < > " '` escaped, so no tag, entity or control of it acts."""
    return escape(readable(text))


def class_name(names: Sequence[str] | None, index: int | None) -> str | None:
    """The name of class `index` among the model's `names`; None where it has none."""
    if index is None or names is None or not 0 <= index < len(names):
        return None
    return names[index]


def shown(text: str, limit: int = 80) -> str:
    """`text` as a message quotes it: at most `limit` characters, what cannot be shown spelled out as `repr` does.

    Text from a file someone else wrote (a report, an archive) may be megabytes long, or hold terminal escapes
    and bidi controls, which `isprintable` counts as unprintable.
    """
    cut = text[:limit]
    if not cut.isprintable():
        cut = "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)
    return cut + ("..." if len(text) > limit else "")
