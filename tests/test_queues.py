"""Review queues (review/queues.py): stratified over score bins, least confident, nearest a class
threshold, near ties; each leaves out what reviewers already judged."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audify_batch.model.checkpoint import read_card, resolve_model_dir
from audify_batch.review.queues import (
    card_thresholds,
    near_tie_queue,
    stratified_queue,
    uncertain_queue,
)
from audify_batch.store import schema as S
from audify_batch.store.annotations import Annotation, AnnotationWriter, Verdict
from audify_batch.store.query import connect
from tests.synthetic_output import M1, RUN1, T0, Rec, recording_id, segments_table, write_part, write_run

# Segments per 0.1-wide bin of the 'dog' confidence: unequal, some bins thin.
BIN_SIZES = (50, 30, 20, 10, 5, 5, 5, 5, 5, 65)
PER_RECORDING = 20


def dog_confidences() -> list[float]:
    """One confidence per segment, inside its bin (never on an edge)."""
    values = []
    for b, size in enumerate(BIN_SIZES):
        values += [round(b / 10 + 0.01 + 0.08 * i / size, 4) for i in range(size)]
    return values


def uri_of(k: int) -> str:
    return f"file:///archive/q/{k:03d}.wav"


def segment(k: int, index: int) -> str:
    return f"{recording_id(uri_of(k))}:{index}"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """M1 with 200 segments whose top-1 label is 'dog' at the confidences of ``dog_confidences``,
    10 recordings of 20, in 2 parts."""
    out = tmp_path / "out"
    confidences = dog_confidences()
    recs = [
        Rec(
            uri_of(k),
            S.STATUS_LABELED,
            [("dog", c) for c in confidences[k * PER_RECORDING : (k + 1) * PER_RECORDING]],
        )
        for k in range(len(confidences) // PER_RECORDING)
    ]
    write_part(out, M1, RUN1, 0, recs[:5], 8, T0)
    write_part(out, M1, RUN1, 1, recs[5:], 8, T0)
    write_run(out, M1, RUN1, T0, recs)
    return out


def annotate(out: Path, items: list[tuple[int, int, str]]) -> None:
    """Verdicts on (recording k, segment index, label): present."""
    AnnotationWriter(str(out)).append(
        [
            Annotation(M1, segment(k, i), uri_of(k), float(i), float(i + 1), label, Verdict.PRESENT)
            for k, i, label in items
        ]
    )


def test_stratified_queue_gives_each_bin_its_turn(out: Path) -> None:
    con = connect(out)
    try:
        even = stratified_queue(con, M1, "dog", 40)
        filled = stratified_queue(con, M1, "dog", 80)
        again = stratified_queue(con, M1, "dog", 80)
        other_seed = stratified_queue(con, M1, "dog", 80, seed=1)
        coarse = stratified_queue(con, M1, "dog", 10, bins=2)
    finally:
        con.close()
    assert Counter(item.bin for item in even) == dict.fromkeys(range(10), 4)
    # 5 turns of all ten bins, then the bins that have more take turns: 3 (10), then 1, 2, 9, and 0.
    assert Counter(item.bin for item in filled) == {0: 12, 1: 11, 2: 11, 3: 10, 9: 11} | dict.fromkeys(
        range(4, 9), 5
    )
    assert all(int(item.score * 10) == item.bin and item.label == "dog" for item in filled)
    assert len({item.segment_id for item in filled}) == 80
    assert filled == again and filled != other_seed  # fixed by the seed
    assert Counter(item.bin for item in coarse) == {0: 5, 1: 5}


def test_stratified_queue_leaves_out_segments_reviewed_for_the_label(out: Path) -> None:
    # Recording 9 holds the last 20 segments of bin 9; recording 0 the first 20 of bin 0.
    annotate(out, [(9, i, "dog") for i in range(20)] + [(0, i, "rain") for i in range(20)])
    con = connect(out)
    try:
        queue = stratified_queue(con, M1, "dog", 200)
    finally:
        con.close()
    ids = {item.segment_id for item in queue}
    assert len(queue) == 180 and not ids & {segment(9, i) for i in range(20)}
    assert {segment(0, i) for i in range(20)} <= ids  # a verdict on another label does not count
    assert Counter(item.bin for item in queue)[9] == 45


def test_uncertain_queue_is_lowest_top1_first_without_reviewed(out: Path) -> None:
    annotate(out, [(0, 0, "dog")])  # the least confident segment
    con = connect(out)
    try:
        queue = uncertain_queue(con, M1, 5)
    finally:
        con.close()
    expected = sorted(dog_confidences())[1:6]
    assert [item.score for item in queue] == pytest.approx(expected)
    assert segment(0, 0) not in {item.segment_id for item in queue}


def test_near_threshold_queue_for_a_thresholded_model(out: Path) -> None:
    annotate(out, [(5, 15, "dog")])  # 0.51, the call nearest 0.505
    con = connect(out)
    try:
        queue = uncertain_queue(con, M1, 4, thresholds={"dog": 0.505, "rain": 0.99})
    finally:
        con.close()
    # Bin 4 holds 0.41 .. 0.474 and bin 5 0.51 .. 0.574 (steps of 0.016); 'rain' (rank 2, at most
    # 0.6) is far from 0.99.
    assert [item.score for item in queue] == pytest.approx([0.526, 0.474, 0.542, 0.458])
    assert [item.margin for item in queue] == pytest.approx([0.021, -0.031, 0.037, -0.047], abs=1e-6)
    assert all(item.label == "dog" for item in queue)


def test_a_thresholded_model_needs_its_thresholds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    recs = [Rec(uri_of(0), S.STATUS_LABELED, [("dog", 0.7), ("rain", 0.4)])]
    write_part(out, M1, RUN1, 0, recs, 8, T0)
    write_run(out, M1, RUN1, T0, recs)
    path = out / S.SEGMENTS / f"{S.MODEL_PARTITION}={M1}" / f"part-{RUN1}-00000.parquet"
    table = segments_table(M1, RUN1, recs, 8)
    detected = pa.array([["dog"], []], pa.list_(pa.string()))
    pq.write_table(table.set_column(table.schema.get_field_index(S.DETECTED), S.DETECTED, detected), path)
    con = connect(out)
    try:
        with pytest.raises(ValueError, match="per-class thresholds: pass them"):
            uncertain_queue(con, M1, 5)
        assert [item.label for item in uncertain_queue(con, M1, 5, {"dog": 0.5, "rain": 0.5})] == [
            "rain",
            "dog",
        ]
    finally:
        con.close()
    card = read_card(resolve_model_dir("default"))
    assert card_thresholds(card)["dog"] == card.thresholds[card.labels.index("dog")]
    assert card_thresholds(read_card(resolve_model_dir("fast"))) == {}


def test_near_tie_queue_is_smallest_gap_first_without_either_label_reviewed(out: Path) -> None:
    # top3('dog', c) puts 'rain' second at 0.6 * (1 - c): the gap is 1.6 c - 0.6, least for the least c.
    con = connect(out)
    try:
        before = near_tie_queue(con, M1, 3)
    finally:
        con.close()
    lowest = sorted(dog_confidences())[:4]
    assert [item.score for item in before] == pytest.approx(lowest[:3])
    assert [item.margin for item in before] == pytest.approx([1.6 * c - 0.6 for c in lowest[:3]], abs=1e-6)
    assert all(item.label == "dog" and item.runner_up == "rain" for item in before)
    annotate(out, [(0, 0, "rain")])  # the first: a verdict on its rank-2 label
    con = connect(out)
    try:
        after = near_tie_queue(con, M1, 3)
    finally:
        con.close()
    assert before[0].segment_id == segment(0, 0) and segment(0, 0) not in {item.segment_id for item in after}
    assert [item.score for item in after] == pytest.approx(lowest[1:])


def test_queue_sizes_are_checked(out: Path) -> None:
    con: duckdb.DuckDBPyConnection = connect(out)
    try:
        for bad in (0, 10_001):
            with pytest.raises(ValueError, match="a queue holds 1 to"):
                near_tie_queue(con, M1, bad)
        with pytest.raises(ValueError, match="bins must be"):
            stratified_queue(con, M1, "dog", 5, bins=0)
    finally:
        con.close()


def test_a_verdict_on_an_older_window_does_not_take_the_segment_out(out: Path) -> None:
    """A recording labeled again with another hop keeps its segment indices; a verdict given on the
    old window (another span) is no verdict on the new one."""
    old_window = [
        Annotation(M1, segment(9, i), uri_of(9), i + 0.5, i + 1.5, "dog", Verdict.PRESENT) for i in range(20)
    ]
    AnnotationWriter(str(out)).append(old_window)
    con = connect(out)
    try:
        stratified = {item.segment_id for item in stratified_queue(con, M1, "dog", 200)}
        uncertain = {item.segment_id for item in uncertain_queue(con, M1, 200)}
        near_tie = {item.segment_id for item in near_tie_queue(con, M1, 200)}
    finally:
        con.close()
    renewed = {segment(9, i) for i in range(20)}
    assert renewed <= stratified and renewed <= uncertain and renewed <= near_tie
