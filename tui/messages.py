"""The interface's own messages, in one place (Textual's style: dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from semiotui.engine.session import Job


@dataclass
class EngineEvent(Message):
    """An event of a job the session ran on the model (posted from the session's thread)."""

    job: Job
    event: object
