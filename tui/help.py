"""The help screen: the keys, and what each pane shows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from rich.markdown import Markdown
from textual.widgets import Static

from .keymap import BINDINGS

HELP = """\
**semiotui** shows each layer's saliency map, its **spatial entropy**, and **superization**:
a drop of entropy from one layer to a deeper one, beyond what copies of the model with shuffled
weights show, read as signs aggregated into a supersign. Entropy is the *arrangement* entropy by
default: bits below the same pixels in random orders (0: no structure; semiotui/docs/METHOD.md §2.1).

### Keys
- `j` `k` `↑` `↓`: move in the layer tree; `enter`: open or close a group
- `space`: measure the layer, or stop measuring it (restarts the analysis)
- `/`: find a layer by name (`↓` next match, `enter` done, `esc` close)
- `n` `p`: next / previous image (a map the analysis did not keep is computed when shown)
- `c`: compare: this image against the dataset, per class, right vs wrong, the misclassified
  images (`←` `→` or `1` `2` `3` switch views; `enter` opens an image in the explorer; `esc` back);
  on a small terminal it shows one pane at a time: `w` switches (mistakes and maps, curves, steps)
- `m` `t`: next saliency method / target (restarts the analysis); any class as the target:
  `ctrl+p`, type `target`
- `v`: the saliency pane shows the map over the image, the map alone, or the image alone
- `a`: the curve against the control (the model minus its shuffled copies), or the entropy itself
- `e`: export the analysis as a report folder (HTML, Markdown, JSON, CSV, with a screenshot);
  while the analysis runs, the report covers the images finished so far, marked partial
- `g`: greedy pruning of a copy of the model (semiotui/docs/METHOD.md §5): set the options, `s` starts,
  `x` stops after the current step (both also from the number fields); then save the pruned
  model, export its report or compare it with the original (or `ctrl+p`); `esc` back
- `tab` `shift+tab`: move between panes
- `ctrl+p`: commands: jump to a layer, method, estimator, target, export, prune, theme
- `?` `F1`: this help; `q`: quit (asks while the analysis runs)
- every key above can be remapped in `config.json` (`"keymap"`, README "Keys")

### Panes
- **Layers**: `●` measured, `○` could be measured, dim: no spatial map; the number is the
  mean entropy over the images done so far (empty maps left out); `◆` the layer the image's
  entropy drops into most; `∅` most of its maps are empty; `⑂` a branch off the main path.
- **Saliency**: the selected layer's map over the image, the class it explains, and the colour
  scale (low to high, with the map's largest value); an empty map (all zero) says so.
- **Entropy curve**: along the main path: the dataset mean with its 95% band, the current
  image, the selected layer; once the control has run, against it: the model minus the control
  networks on the control's images, with the 95% band of one network against theirs (below 0:
  more ordered than the shuffled copies); `a` switches back to the entropy with the control in grey.
- **Steps**: ΔH = H(the layer it consumes) − H(layer), on the control's images (all images
  without a control); a bar right of the axis is a drop; `*` superization: the drop is significant,
  beyond the control networks', into a layer below their level (Holm-corrected, p < 0.01);
  `~` a significant drop that is not; `∅` mostly empty maps (no verdict). The last line names the
  span of layers where aggregation happens, with its excess over the control and its 95% interval.
  The pane's corner says what the control is, or that there is none.

A saved report (`semiotui open DIR`) has no model: its method, target and layers stay as saved,
and only the images whose maps it kept show a map.
"""


class HelpScreen(ModalScreen[None]):
    """Keys and panes, and the keys the user remapped (`keymap`: binding id to keys); escape, q, ? or F1
    (or what the keymap made of them) closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close", id="back"),
        Binding("question_mark,f1", "dismiss", "Close", show=False, id="help"),
        Binding("q", "dismiss", "Close", show=False, id="quit"),
    ]

    def __init__(self, keymap: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.keymap = dict(keymap or {})

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help") as pane:
            pane.border_title = "Help"
            pane.border_subtitle = "esc closes"
            yield Static(Markdown(remapped(self.keymap) + HELP))  # Rich's, drawn at once: Textual's widget per block took 0.3 s to open


def remapped(keymap: Mapping[str, str]) -> str:
    """The keys `config.json` remapped, first: the list below names the defaults."""
    if not keymap:
        return ""
    lines = "".join(f"- `{keys}`: {BINDINGS[binding][1]} (`{binding}`)\n" for binding, keys in keymap.items())
    return f"### Your keys (config.json), in place of the defaults below\n{lines}\n"
