"""The user's mistakes, as errors that say what was wrong and what to do; any other exception is a bug.

A message names the parameters it is about in backticks, as the engine's
functions and settings call them (`input_size`, `target_params`); each front end
words them its own way (`--input-size` on the command line, "input size" in a form).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .names import shown

PARAMETER = re.compile(r"`(\w+)`")
QUOTED = 200  # characters of another exception's message quoted in one of ours


class SemiotuiError(Exception):
    """A mistake in what was asked for (a model file, images, a setting, an output), said in one line."""


class InvalidValue(SemiotuiError, ValueError):
    """A setting, file or image that cannot be used."""


class LoadError(InvalidValue):
    """A model file that cannot be used."""


class MissingPath(SemiotuiError, FileNotFoundError):
    """A file or folder that is not there."""


class PathInTheWay(SemiotuiError, FileExistsError):
    """An output that would replace or write into something it must not."""


class OutOfMemory(SemiotuiError, MemoryError):
    """The device's memory is too small even for one image at a time."""


class BatchFailed(SemiotuiError):
    """The analysis stopped on an error in one batch: the message names the batch, its images and the error.

    `result` holds what was analysed before it (an `AnalysisResult`, marked `failed`), to report as it is.
    """

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


def one_line(exc: BaseException, *, short: bool = False) -> str:
    """The exception's message on one line, naming its type when it has no message.

    `short` cuts it to `QUOTED` characters, what cannot be shown spelled out, to quote inside a message of
    ours, with its backticks made quotes: they are not ours, naming parameters (torch says "`weights_only` ...
    from `False`", no --False).
    """
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])  # str() of a KeyError quotes its key
    if short:
        text = shown(text, QUOTED).replace("`", "'")
    return text or type(exc).__name__


def worded(text: str, word: Callable[[str], str]) -> str:
    """`text` with each parameter it names in backticks replaced by `word(name)`."""
    return PARAMETER.sub(lambda match: word(match.group(1)), text)
