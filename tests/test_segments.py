from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audify_batch.ingest.segments import LastWindow, Segment, plan_segments, segment_plan


@st.composite
def plans(draw: st.DrawFn) -> tuple[int, int, int]:
    """(n_samples, window, hop) with at most a few thousand segments."""
    window = draw(st.integers(min_value=1, max_value=300_000))
    hop = draw(st.integers(min_value=1, max_value=window))
    n = draw(st.integers(min_value=0, max_value=window + hop * 2_000))
    return n, window, hop


@given(plans())
def test_pad_covers_every_sample_exactly_within_bounds(plan: tuple[int, int, int]) -> None:
    n, window, hop = plan
    segments = plan_segments(n, window, hop, LastWindow.PAD)
    assert [s.index for s in segments] == list(range(len(segments)))
    for s in segments:
        assert 0 <= s.start_sample < s.end_sample <= n
        assert s.n_samples <= window
        assert s.start_sample == s.index * hop
    # all but the last are full windows
    assert all(s.n_samples == window for s in segments[:-1])
    if n == 0:
        assert segments == []
    else:
        assert segments[-1].end_sample == n
        # union of segments is [0, n): consecutive starts differ by hop <= window
        assert all(b.start_sample <= a.end_sample for a, b in itertools.pairwise(segments))


@given(plans())
def test_drop_keeps_only_full_windows(plan: tuple[int, int, int]) -> None:
    n, window, hop = plan
    segments = plan_segments(n, window, hop, LastWindow.DROP)
    assert all(s.n_samples == window for s in segments)
    expected = 0 if n < window else (n - window) // hop + 1
    assert len(segments) == expected
    if segments:  # what is left after the last window is too short for another one
        assert segments[-1].start_sample + hop + window > n


@given(plans())
def test_pad_adds_at_most_one_partial_segment_to_drop(plan: tuple[int, int, int]) -> None:
    n, window, hop = plan
    padded = plan_segments(n, window, hop, LastWindow.PAD)
    dropped = plan_segments(n, window, hop, LastWindow.DROP)
    assert padded[: len(dropped)] == dropped
    assert len(padded) - len(dropped) in (0, 1)


@given(st.integers(min_value=1, max_value=2_000), st.integers(min_value=1, max_value=1_000))
def test_non_overlapping_windows_tile_without_overlap(n_windows: int, window: int) -> None:
    segments = plan_segments(n_windows * window, window, window)
    assert len(segments) == n_windows
    assert all(b.start_sample == a.end_sample for a, b in itertools.pairwise(segments))


def test_overlap_example_in_samples_of_source_rate() -> None:
    # 12 s at 44.1 kHz, 5 s windows, 2.5 s hop
    segments = plan_segments(12 * 44_100, 5 * 44_100, 110_250)
    assert [(s.start_sample, s.end_sample) for s in segments] == [
        (0, 220_500),
        (110_250, 330_750),
        (220_500, 441_000),
        (330_750, 529_200),
    ]
    assert segments[-1].end_s(44_100) == 12.0


@pytest.mark.parametrize("bad", [(-1, 10, 10), (10, 0, 1), (10, 5, 6), (10, 5, 0)])
def test_invalid_arguments_raise(bad: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        plan_segments(*bad)


@given(plans(), st.integers(min_value=0, max_value=400_000))
def test_pad_labels_a_tail_only_when_long_enough(plan: tuple[int, int, int], min_last: int) -> None:
    n, window, hop = plan
    segments = plan_segments(n, window, hop, LastWindow.PAD, min_last)
    full = plan_segments(n, window, hop, LastWindow.DROP)
    assert segments[: len(full)] == full
    if n > 0:
        assert segments, "a recording with audio always gets at least one segment"
    covered = full[-1].end_sample if full else 0
    if full and len(segments) == len(full):
        assert n - covered < max(1, min_last)
    if len(segments) > len(full) and full:
        assert n - covered >= min_last


def test_a_few_milliseconds_of_tail_are_not_a_segment() -> None:
    # a 5.01 s clip at 44.1 kHz: the 10 ms tail is not labeled with the default 1 s minimum
    segments = plan_segments(220_941, 220_500, 220_500, LastWindow.PAD, 44_100)
    assert [(s.start_sample, s.end_sample) for s in segments] == [(0, 220_500)]
    assert len(plan_segments(220_941, 220_500, 220_500, LastWindow.PAD, 0)) == 2
    assert plan_segments(100, 220_500, 220_500, LastWindow.PAD, 44_100) == [Segment(0, 0, 100)]


@given(plans(), st.sampled_from(list(LastWindow)), st.integers(min_value=0, max_value=300_000))
def test_the_lazy_plan_knows_its_length_without_making_its_segments(
    plan: tuple[int, int, int], last_window: LastWindow, min_last: int
) -> None:
    n, window, hop = plan
    lazy = segment_plan(n, window, hop, last_window, min(min_last, window))
    assert (
        len(lazy) == len(list(lazy)) == len(plan_segments(n, window, hop, last_window, min(min_last, window)))
    )


def test_a_thousand_hour_plan_holds_no_segment_list() -> None:
    """A worker plans each recording before decoding it: the plan must not grow with its length."""
    rate_hz = 48_000
    tracemalloc.start()
    try:
        lazy = segment_plan(1000 * 3600 * rate_hz, 5 * rate_hz, rate_hz)  # 1 s hop: 3.6 M segments
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(lazy) == 1000 * 3600 - 5 + 1 and peak_bytes < 64 << 10
    first, second = itertools.islice(lazy, 2)
    assert (first, second) == (Segment(0, 0, 5 * rate_hz), Segment(1, rate_hz, 6 * rate_hz))
