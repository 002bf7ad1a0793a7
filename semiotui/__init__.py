"""semiotui: how a convolutional network abstracts what it sees, in the terminal."""

__version__ = "0.1.0"
