"""Segment planning: a pure function over integer sample counts.

Windows of ``window_samples`` start every ``hop_samples`` from sample 0.
What happens to audio after the last full window is an explicit policy:

- ``PAD`` (default): one more, shorter segment covers the rest, and the
  model sees it zero-padded to a full window, when at least
  ``min_last_samples`` of audio are left uncovered by the full windows (a
  few milliseconds of tail, zero-padded to 5 s, would only give a noise
  label). A recording shorter than one window always gives one segment.
- ``DROP``: audio after the last full window is not labelled.

Bounds are half-open ``[start_sample, end_sample)`` in the source's own rate.
``segment_audio`` then cuts a stream of model-rate blocks at those bounds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import numpy as np

T = TypeVar("T")


class LastWindow(StrEnum):
    PAD = "pad"
    DROP = "drop"


@dataclass(frozen=True)
class SegmentingConfig:
    """How recordings are cut: the hop between windows and the policy for the last, partial one.

    The window length is not here: it belongs to the model (its card's ``segment_s``).
    """

    hop_s: float | None = None  # None: one window length, no overlap
    last_window: LastWindow = LastWindow.PAD
    min_last_s: float = 1.0  # shortest tail labeled as its own segment (PAD)

    def __post_init__(self) -> None:
        if self.hop_s is not None and not self.hop_s > 0:
            raise ValueError(f"hop_s must be positive, got {self.hop_s}")
        if not self.min_last_s >= 0:
            raise ValueError(f"min_last_s must be >= 0, got {self.min_last_s}")

    def grid(self, segment_s: float, model_rate_hz: int) -> SegmentGrid:
        """This policy for a model that takes ``segment_s``-second windows at ``model_rate_hz``."""
        hop_s = segment_s if self.hop_s is None else self.hop_s
        return SegmentGrid(segment_s, hop_s, self.last_window, self.min_last_s, model_rate_hz)


@dataclass(frozen=True)
class SegmentGrid:
    """A segmenting policy resolved against a model: what the workers cut, in seconds and samples."""

    segment_s: float
    hop_s: float
    last_window: LastWindow
    min_last_s: float
    model_rate_hz: int
    block_frames: int = 1 << 17  # frames decoded per read

    def __post_init__(self) -> None:
        if not self.segment_s > 0 or self.model_rate_hz <= 0 or self.block_frames <= 0:
            raise ValueError("segment_s, model_rate_hz and block_frames must be positive")
        if not 0 < self.hop_s <= self.segment_s:
            raise ValueError(f"hop_s must be in (0, {self.segment_s}], got {self.hop_s}")
        if not 0 <= self.min_last_s <= self.segment_s:
            raise ValueError(f"min_last_s must be in [0, {self.segment_s}], got {self.min_last_s}")

    @property
    def window_samples(self) -> int:
        """One window at the model rate."""
        return seconds_to_samples(self.segment_s, self.model_rate_hz)

    def plan(self, n_frames: int, sample_rate_hz: int) -> SegmentPlan:
        """The segments of a recording of ``n_frames`` frames at ``sample_rate_hz``, made lazily."""
        return segment_plan(
            n_frames,
            seconds_to_samples(self.segment_s, sample_rate_hz),
            seconds_to_samples(self.hop_s, sample_rate_hz),
            self.last_window,
            seconds_to_samples(self.min_last_s, sample_rate_hz),
        )


@dataclass(frozen=True)
class Segment:
    index: int
    start_sample: int
    end_sample: int

    @property
    def n_samples(self) -> int:
        return self.end_sample - self.start_sample

    def start_s(self, sample_rate_hz: int) -> float:
        return self.start_sample / sample_rate_hz

    def end_s(self, sample_rate_hz: int) -> float:
        return self.end_sample / sample_rate_hz


@dataclass(frozen=True)
class SegmentPlan:
    """The segments of one recording, made one at a time: O(1) memory however long it is.

    ``n_full`` windows every ``hop_samples`` from 0, then the shorter ``last`` segment if any.
    """

    n_full: int
    window_samples: int
    hop_samples: int
    last: Segment | None

    def __len__(self) -> int:
        return self.n_full + (self.last is not None)

    def __iter__(self) -> Iterator[Segment]:
        hop, window = self.hop_samples, self.window_samples
        for i in range(self.n_full):
            yield Segment(i, i * hop, i * hop + window)
        if self.last is not None:
            yield self.last


def segment_plan(
    n_samples: int,
    window_samples: int,
    hop_samples: int,
    last_window: LastWindow = LastWindow.PAD,
    min_last_samples: int = 0,
) -> SegmentPlan:
    """All segments of a recording of ``n_samples`` samples, lazily."""
    if n_samples < 0 or min_last_samples < 0:
        raise ValueError(f"n_samples and min_last_samples must be >= 0, got {n_samples}, {min_last_samples}")
    if window_samples <= 0 or not 0 < hop_samples <= window_samples:
        raise ValueError("need window_samples > 0 and 0 < hop_samples <= window_samples")
    n_full = 0 if n_samples < window_samples else (n_samples - window_samples) // hop_samples + 1
    covered = (n_full - 1) * hop_samples + window_samples if n_full else 0
    long_enough = n_full == 0 or n_samples - covered >= max(1, min_last_samples)
    last = None
    if last_window is LastWindow.PAD and covered < n_samples and long_enough:
        last = Segment(n_full, n_full * hop_samples, n_samples)
    return SegmentPlan(n_full, window_samples, hop_samples, last)


def plan_segments(
    n_samples: int,
    window_samples: int,
    hop_samples: int,
    last_window: LastWindow = LastWindow.PAD,
    min_last_samples: int = 0,
) -> list[Segment]:
    """All segments of a recording of ``n_samples`` samples, as a list."""
    return list(segment_plan(n_samples, window_samples, hop_samples, last_window, min_last_samples))


def seconds_to_samples(seconds: float, sample_rate_hz: int) -> int:
    """Nearest whole number of samples for a duration."""
    return round(seconds * sample_rate_hz)


def segment_audio(
    blocks: Iterable[np.ndarray], segments: Iterable[Segment], source_hz: int, model_hz: int, window: int
) -> Iterator[tuple[Segment, np.ndarray]]:
    """Cut model-rate blocks into the planned segments, each padded to a full window.

    Segments are planned in source samples; their model-rate bounds are the
    source bounds scaled by the rate ratio, rounded down; ``window`` is the model's
    window in model-rate samples.
    """
    buffer = np.zeros(0, np.float32)
    offset = 0  # model-rate index of buffer[0]
    pending = iter(segments)
    current = next(pending, None)
    for block in with_end(blocks):
        if block is not None:
            buffer = np.concatenate([buffer, block])
        while current is not None:
            start = current.start_sample * model_hz // source_hz
            end = min(current.end_sample * model_hz // source_hz, start + window)
            if block is not None and offset + len(buffer) < end:
                break
            piece = buffer[start - offset : end - offset]
            yield current, np.pad(piece, (0, window - len(piece)))
            current = next(pending, None)
            if current is not None:
                next_start = current.start_sample * model_hz // source_hz
                buffer, offset = buffer[next_start - offset :], next_start


def with_end(items: Iterable[T]) -> Iterator[T | None]:
    """The items, then one ``None`` to mark the end."""
    yield from items
    yield None
