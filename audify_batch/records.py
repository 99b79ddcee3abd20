"""Small records shared by every layer: statuses, progress while a run goes, the summary when it ends."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RecordingStatus(StrEnum):
    """What a run did with one recording (the ``status`` column of ``recordings``)."""

    LABELED = "labeled"
    FAILED = "failed"
    SKIPPED = "skipped"  # unchanged since it was labeled with the same settings
    PARTIAL = "partial"  # cut short (truncated): what is readable is labeled, ``error`` says how much

    @property
    def has_segments(self) -> bool:
        """Whether the run wrote this recording's segments (labeled, or partial: what was readable)."""
        return self in (RecordingStatus.LABELED, RecordingStatus.PARTIAL)


class RunStatus(StrEnum):
    """The state of a run (the ``status`` column of ``runs``)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C, or found dead by a later run


@dataclass(frozen=True)
class Progress:
    recordings_done: int
    recordings_total: int
    segments: int
    audio_s: float
    wall_s: float

    @property
    def realtime_factor(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    out: str
    model: str
    n_recordings: int
    n_labeled: int
    n_failed: int
    n_skipped: int
    n_segments: int
    audio_s: float
    wall_s: float
    failures: tuple[tuple[str, str], ...]
    n_partial: int = 0  # of n_labeled: recordings cut short, labeled as far as readable
    warnings: tuple[tuple[str, str], ...] = ()  # (uri, why) of the partial recordings

    @property
    def realtime_factor(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run after it committed every recording it had finished."""

    def __init__(self, summary: RunSummary) -> None:
        super().__init__(f"interrupted after committing {summary.n_labeled} labeled recordings")
        self.summary = summary
