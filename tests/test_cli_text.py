"""What the command line prints, and the reports it writes, carry names as text.

Rich reads a string as markup: a skipped file named `x[/]bad.png` ended `semiotui
report` with "closing tag '[/]' ... has nothing to close", and `[red]` vanished
from a name. Escape sequences in a path set the terminal's title when echoed, and
bidi controls (U+202E) reorder what is shown: both are replaced, wherever a name
is shown, by U+FFFD.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import only_error_line, write_tiny_inputs
from torch import nn

from semiotui.engine.names import REPLACEMENT, readable
from semiotui.tui.cli import main

TESTS = Path(__file__).parent
ESCAPE = "\x1b]0;T\x07"  # sets the terminal's title
BIDI = "\u202e"  # right-to-left override: what follows is shown reversed
OPTIONS = ["--pythonpath", str(TESTS), "--input-size", "16", "16", "--device", "cpu", "--no-control"]
TINY = ["--arch", "helpers:TinyNet", *OPTIONS]


@pytest.fixture
def inputs(tmp_path) -> Path:
    return write_tiny_inputs(tmp_path, images=4, size=16, classes=2)


class NoGradNet(nn.Module):
    """A conv named with markup whose output the forward computes without gradients: its maps are empty."""

    NAME = "x[/]y"

    def __init__(self) -> None:
        super().__init__()
        self.add_module(self.NAME, nn.Conv2d(3, 4, 3, padding=1))
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = getattr(self, self.NAME)(x)
        return self.head(self.conv(x))


@pytest.mark.parametrize("name", ["x[/]bad.png", "[red]junk.png"])
def test_markup_in_a_skipped_file_name_is_printed_as_written(name, inputs, tmp_path, capsys):
    path = inputs / "images" / name  # x[/]bad.png: a file in a folder x[
    path.parent.mkdir(exist_ok=True)
    path.write_text("not an image")
    status = main(["report", str(inputs / "tiny.pth"), "--images", str(inputs / "images"), *TINY,
                   "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 0, err
    assert (tmp_path / "out" / "report.json").is_file()
    assert f"images/{name} (not an image)" in err


def test_markup_in_a_layer_name_is_printed_as_written(inputs, tmp_path, capsys):
    torch.save(NoGradNet().state_dict(), tmp_path / "nograd.pth")
    status = main(["report", str(tmp_path / "nograd.pth"), "--images", str(inputs / "images"), *OPTIONS,
                   "--arch", "test_cli_text:NoGradNet", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 0, err
    assert f"the class score does not depend on {NoGradNet.NAME}" in err


@pytest.mark.parametrize("bad, shown", [(ESCAPE, "\ufffd]0;T\ufffd"), (BIDI, "\ufffd")], ids=["escape", "bidi"])
@pytest.mark.parametrize("option", ["MODEL", "--images", "-o", "--arch", "--import", "--pythonpath"])
def test_an_error_shows_a_name_from_each_option_without_its_control_characters(option, bad, shown, inputs, tmp_path,
                                                                               capsys):
    odd = str(tmp_path / f"odd{bad}name")
    given = {"MODEL": str(inputs / "tiny.pth"), "--images": str(inputs / "images"), "-o": str(tmp_path / "out"),
             "--arch": "helpers:TinyNet"}
    extra = []
    if option in ("MODEL", "--images"):
        given[option] = odd  # no such file
    elif option == "-o":
        Path(odd).write_text("a file of the user's")  # in the way of the report folder
        given["-o"] = odd
    elif option == "--arch":
        given["--arch"] = f"odd{bad}module:Net"  # no such module
    else:
        extra = [option, f"odd{bad}name" if option == "--import" else odd]  # no such module, no such folder
    status = main(["report", given["MODEL"], "--images", given["--images"], "--arch", given["--arch"], *OPTIONS,
                   *extra, "-o", given["-o"]])
    line = only_error_line(capsys.readouterr().err)
    assert status == 1
    assert f"odd{shown}" in line and "\x1b" not in line and BIDI not in line, line
    if option == "-o":
        assert Path(odd).read_text() == "a file of the user's"


def test_bidi_controls_are_replaced_one_for_one():
    controls = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    assert readable(f"a{controls}b") == f"a{REPLACEMENT * len(controls)}b"
    assert readable("مرحبا \u200d👩‍💻") == "مرحبا \u200d👩‍💻"  # right-to-left text and joiners are kept


class BidiNet(nn.Module):
    """TinyNet's shape with its first conv named with a bidi control and an escape."""

    NAME = f"conv{BIDI}{ESCAPE}1"

    def __init__(self) -> None:
        super().__init__()
        self.add_module(self.NAME, nn.Conv2d(3, 4, 3, padding=1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(getattr(self, self.NAME)(x)))


def test_bidi_controls_and_escapes_in_file_and_layer_names_stay_out_of_the_reports(inputs, tmp_path, capsys):
    first = next((inputs / "images").rglob("*.png"))
    first.rename(first.with_name(f"{BIDI}gnp.png"))
    torch.save(BidiNet().state_dict(), tmp_path / "bidi.pth")
    status = main(["report", str(tmp_path / "bidi.pth"), "--images", str(inputs / "images"), *OPTIONS,
                   "--arch", "test_cli_text:BidiNet", "--maps", "4", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 0, err
    for name in ("entropy.csv", "report.html", "report.md", "images/curve.svg"):
        text = (tmp_path / "out" / name).read_text(encoding="utf-8")
        assert BIDI not in text and "\x1b" not in text, name
    assert f"{REPLACEMENT}gnp.png" in (tmp_path / "out" / "entropy.csv").read_text(encoding="utf-8")
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert f"{REPLACEMENT}gnp.png" in html and readable(BidiNet.NAME) in html


def test_a_usage_error_shows_the_arguments_it_quotes_without_their_control_characters(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", "model.pt", f"odd{ESCAPE}{BIDI}name", "-o", "out"])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == "semiotui report: error: unrecognized arguments: odd\ufffd]0;T\ufffd\ufffdname"
