"""A long recording's rows stream into its own part: the rows held stay bounded, the rows
committed are the same, and a failed or killed recording leaves nothing visible."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from torch.utils.data import DataLoader

from audify_batch.ingest.loader import RecordingOutcome, SegmentChunk, SegmentDataset
from audify_batch.ingest.segments import SegmentingConfig
from audify_batch.ingest.sources import RecordingRef, discover
from audify_batch.records import RecordingStatus
from audify_batch.run.config import OutputConfig
from audify_batch.run.pipeline import run_loop
from audify_batch.run.rows import RowCollector
from audify_batch.store import schema as S
from audify_batch.store.query import run_sql
from audify_batch.store.sink import ParquetSink
from tests.conftest import write_tone
from tests.fakes import FAKE_EMBEDDING_DIM, FakeModel, fake_card

RATE_HZ = 16_000  # the fake card's model rate
LONG_S = 60  # 60 one-second segments
SPILL = 8  # rows of the long recording held before they stream into its part
BATCH = 4
# bytes of one row as the collector holds it: segment index, start, end, rate; top-3 values and
# indices; the (rms, peak) embedding
ROW_BYTES = 4 * 8 + 3 * 4 + 3 * 8 + FAKE_EMBEDDING_DIM * 4
NO_SPILL = 10**9


@pytest.fixture
def long_ref(tmp_path: Path) -> list[RecordingRef]:
    folder = tmp_path / "archive"
    folder.mkdir()
    write_tone(folder / "long.wav", LONG_S, RATE_HZ)
    return discover(str(folder))


def chunks_of(refs: list[RecordingRef]) -> list[SegmentChunk]:
    grid = SegmentingConfig().grid(fake_card().segment_s, RATE_HZ)
    return list(DataLoader(SegmentDataset(refs, grid, BATCH), batch_size=None, num_workers=0))


def new_sink(out: Path, run_id: str = "run-1") -> ParquetSink:
    card = fake_card()
    return ParquetSink(str(out), card.name, card.version, run_id)


def label(
    refs: list[RecordingRef], chunks: list[SegmentChunk], out: Path, spill: int, run_id: str = "run-1"
) -> list[int]:
    """Run the loop into ``out``; returns the segment rows held after each chunk."""
    collector = RowCollector(refs, fake_card(), run_id, "hash-1", spill_bytes=spill * ROW_BYTES)
    held: list[int] = []
    output = OutputConfig(str(out), 3, 20_000, 1e9)
    run_loop(
        chunks,
        FakeModel(),
        collector,
        new_sink(out, run_id),
        output,
        after_chunk=lambda: held.append(collector.held_segments),
    )
    return held


def current_rows(out: Path) -> list[tuple[object, ...]]:
    query = (
        "SELECT uri, segment_index, start_s, end_s, start_sample, end_sample, labels, confidences, "
        "embedding::FLOAT[] FROM segments ORDER BY uri, segment_index"
    )
    return run_sql(str(out), query).rows


def files(out: Path, table: str) -> list[str]:
    return sorted(p.name for p in (out / table).glob("model=*/*"))


def test_rows_held_stay_under_the_spill_size_and_the_rows_are_the_same(
    long_ref: list[RecordingRef], tmp_path: Path
) -> None:
    chunks = chunks_of(long_ref)
    held_plain = label(long_ref, chunks, tmp_path / "plain", NO_SPILL)
    held_spill = label(long_ref, chunks, tmp_path / "spill", SPILL)

    assert max(held_plain) == LONG_S  # without spilling, the whole recording waits for its end
    assert max(held_spill) < SPILL
    rows = current_rows(tmp_path / "spill")
    assert len(rows) == LONG_S
    assert rows == current_rows(tmp_path / "plain")
    card = fake_card()
    folder = tmp_path / "spill" / "segments" / S.model_partition(card.name, card.version)
    (segments_file,) = folder.glob("part-*.parquet")
    assert pq.read_metadata(segments_file).num_row_groups > 1  # written as it came
    assert files(tmp_path / "spill", "recordings") == [segments_file.name]


def test_a_failed_long_recording_leaves_no_rows_and_no_files(
    long_ref: list[RecordingRef], tmp_path: Path
) -> None:
    chunks = chunks_of(long_ref)
    failed = RecordingOutcome(0, RecordingStatus.FAILED, "broke half-way")
    chunks[-1] = replace(chunks[-1], finished=(failed,))
    out = tmp_path / "out"
    label(long_ref, chunks, out, SPILL)

    assert files(out, "segments") == []
    assert run_sql(str(out), "SELECT status FROM recordings").rows == (("failed",),)


def test_a_run_killed_mid_recording_leaves_debris_only_then_resumes_exactly(
    long_ref: list[RecordingRef], tmp_path: Path
) -> None:
    chunks = chunks_of(long_ref)
    out = tmp_path / "out"
    collector = RowCollector(long_ref, fake_card(), "run-1", "hash-1", spill_bytes=SPILL * ROW_BYTES)
    sink, model = new_sink(out), FakeModel()
    for chunk in chunks[: len(chunks) // 2]:  # then the process dies
        collector.add(chunk, model.predict(chunk.waveforms, 3) if len(chunk) else None)
        collector.spill(sink)
    assert collector.held_segments < SPILL
    assert [name.endswith(".tmp") for name in files(out, "segments")] == [True]
    assert files(out, "recordings") == []

    assert new_sink(out, "run-2").remove_debris() == 1
    assert files(out, "segments") == []
    label(long_ref, chunks, out, SPILL, run_id="run-2")
    label(long_ref, chunks, tmp_path / "reference", NO_SPILL)
    assert current_rows(out) == current_rows(tmp_path / "reference")
