"""The interface's own messages, in one place (Textual's style: dataclasses).

The run controller (`controller.py`) posts the ones that come from the engine's jobs; the widgets and the
dialogs' workers post the others. Progress that a later message makes stale says so in `can_replace`, so a
busy screen handles only the latest (as toolong does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message
from textual.notifications import SeverityLevel

if TYPE_CHECKING:  # only named in annotations: the messages load without PyTorch
    from torch import nn

    from semiotui.engine import AnalysisResult, LayerInfo, Measure, PruneLog, Step
    from semiotui.engine.session import Job


# The explorer's analysis and maps.

@dataclass
class RunChanged(Message):
    """The run state took in new results; `now`: redraw everything at once (the run ended, or its verdicts
    changed), else at the next throttled refresh."""

    now: bool = False

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunChanged) and (message.now or not self.now)


@dataclass
class MapsDrawn(Message):
    """Maps the analysis had not kept are now in the run state's rows."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MapsDrawn)


@dataclass
class JobNotice(Message):
    """Something a job said that the user should read (a warning, a failure)."""

    text: str
    severity: SeverityLevel = "warning"
    timeout: float = 6


# Greedy pruning, and the pruned model's analysis.

@dataclass
class PruneWaiting(Message):
    """The explorer's analysis holds the model; pruning starts once it lets go."""


@dataclass
class PrunePhase(Message):
    """What the job is doing, in the engine's words ("step 3: trying conv4")."""

    text: str


@dataclass
class PruneStep(Message):
    """A step is done, accepted or rolled back; `original` is the model before pruning."""

    step: Step
    original: Measure


@dataclass
class PruneEnded(Message):
    """The job ended: the best model so far and its log, or None for both when it stopped before measuring."""

    model: nn.Module | None
    log: PruneLog | None


@dataclass
class PruneFailed(Message):
    """The job stopped on an error."""

    error: BaseException


@dataclass
class PruneSaved(Message):
    """The pruned model and its log are written."""

    path: Path
    log_path: Path


@dataclass
class PruneSaveFailed(Message):
    """Nothing was saved: `error` says why."""

    error: BaseException


@dataclass
class ModelAnalysed(Message):
    """Another model (the pruned one) was analysed on the explorer's images by `job`; `error` when it failed."""

    job: Job
    result: AnalysisResult | None
    error: BaseException | None = None


# The export dialog's worker.

@dataclass
class ExportProgress(Message):
    """The worker is doing `text`; `done` of `total` when it can count."""

    text: str
    done: int | None
    total: int | None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ExportProgress)


@dataclass
class ExportWritten(Message):
    """The report is in `path`."""

    path: Path


@dataclass
class ExportFailed(Message):
    """Nothing was written: `error` says why (None: cancelled)."""

    error: BaseException | None


# The layer pane.

@dataclass
class MeasureToggled(Message):
    """The user asked to measure, or stop measuring, a layer."""

    layer: LayerInfo


@dataclass
class FindLayer(Message):
    """Jump to a layer whose name contains `text`, after the current one when `next`."""

    text: str
    next: bool
