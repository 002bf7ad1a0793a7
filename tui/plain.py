"""Text from outside shown as it is: Textual reads a string as markup, and names are not markup.

File, folder, class and layer names, a saved report's content, and messages that
quote them could hold `[link=...]` (a crash) or `[@click=...]` (an action run on a
click). Widgets get them as `plain(text)`; notifications are plain in `SemiotuiApp.notify`.
"""

from __future__ import annotations

from rich.text import Text

from semiotui.engine.names import readable


def plain(text: str) -> Text:
    """`text` as a Text, which no widget parses, with what a terminal cannot show replaced (`readable`)."""
    return Text(readable(text))
