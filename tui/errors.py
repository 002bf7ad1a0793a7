"""Errors as each front end says them: the engine's parameters as flags on the command line, as words in the
interface. Anything but the user's mistake (or the system's answer, an OSError) is a bug: `--debug` shows its
traceback, on the command line and in the interface."""

from __future__ import annotations

import traceback

from semiotui.engine.errors import SemiotuiError, one_line, worded

# Parameters whose flag is not `--` and the parameter's name with dashes.
FLAGS = {"model": "MODEL", "imports": "--import", "class_names": "--classes"}


def flag(parameter: str) -> str:
    """The command-line flag that sets `parameter`."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def is_bug(exc: BaseException) -> bool:
    """True unless `exc` is the user's mistake or the system's answer (a missing permission, a full disk)."""
    return not isinstance(exc, (SemiotuiError, OSError))


def for_command_line(exc: BaseException) -> str:
    """`exc` on one line with flags for parameters (`--debug` prints the traceback before it)."""
    return flags_in(one_line(exc))


def flags_in(text: str) -> str:
    """A message of the engine's (an error, a warning) with the parameters it names as command-line flags."""
    return worded(text, flag)


def words_in(text: str) -> str:
    """A message of the engine's with the parameters it names in words ("target params"), as the interface has them."""
    return worded(text, lambda parameter: parameter.replace("_", " "))


def for_interface(exc: BaseException, debug: bool = False) -> str:
    """`exc` on one line with parameters in words ("target params"); with `debug`, a bug's traceback follows."""
    text = words_in(one_line(exc))
    if debug and is_bug(exc):
        text += "\n" + "".join(traceback.format_exception(exc)).rstrip()
    return text
