"""Text from outside shown as it is: Textual and Rich read a string as markup, and names are not markup.

File, folder, class and layer names, a saved report's content, and messages that
quote them could hold `[link=...]` (a crash) or `[@click=...]` (an action run on a
click), and escape sequences or bidi controls (`readable`). Widgets get them as
`plain(text)`; notifications are plain in `SemiotuiApp.notify`; the command line
prints every line with `say`.
"""

from __future__ import annotations

import sys

from rich.text import Text

from semiotui.engine.names import readable


def plain(text: str) -> Text:
    """`text` as a Text, which no widget parses, with what a terminal cannot show replaced (`readable`)."""
    return Text(readable(text))


_quiet = False  # `--quiet`: only what must be seen


def set_quiet(on: bool) -> None:
    """From now on (`--quiet`), `say` prints only the lines marked `always` (errors, warnings), and no progress."""
    global _quiet
    _quiet = on


def quiet() -> bool:
    return _quiet


def say(line: str, *, always: bool = False) -> None:
    """Print `line` on stderr as it is, with what a terminal cannot show replaced (`readable`); under `--quiet`
    only when `always`.

    Plain `print`, never Rich's markup; while a progress bar runs, Rich takes the line and prints it above the bar.
    """
    if always or not _quiet:
        print(readable(line), file=sys.stderr)
