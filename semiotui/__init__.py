"""semiotui: how a convolutional network abstracts what it sees, in the terminal."""

from pathlib import Path

__version__ = "0.1.0"

METHOD = Path(__file__).parent / "docs" / "METHOD.md"  # what semiotui computes, installed with the package
