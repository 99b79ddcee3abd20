"""Small records a run reports: progress while it runs, the summary when it ends."""

from __future__ import annotations

from dataclasses import dataclass


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

    @property
    def realtime_factor(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0
