"""Memory flat in the length of a recording: the rows held are bounded in bytes whatever the embedding
width, the streamed part is written without a dictionary for the embedding, streaming into an S3 OUT
gives the same rows as a local OUT, and a worker builds each chunk in one buffer."""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from fsspec.core import url_to_fs

from audify_batch.ingest.loader import RecordingOutcome, SegmentChunk, SegmentPiece, _ChunkBuilder
from audify_batch.ingest.segments import Segment
from audify_batch.ingest.sources import RecordingRef
from audify_batch.model.checkpoint import ModelCard
from audify_batch.model.outputs import TopK
from audify_batch.records import RecordingStatus
from audify_batch.run import pipeline
from audify_batch.run.config import LabelConfig
from audify_batch.run.rows import SPILL_BYTES, RowCollector
from audify_batch.store import schema as S
from audify_batch.store import sink as sink_module
from audify_batch.store.query import run_sql
from audify_batch.store.segments_file import dictionary_columns
from audify_batch.store.sink import ParquetSink
from tests.archive_builders import truncated_flac
from tests.conftest import SEGMENT_KEYS, assert_same_segments, write_noise
from tests.fakes import fake_card
from tests.s3_server import moto_bucket

BATCH = 16
TOP_K = 3
N_SEGMENTS = 1000


def card_of_width(embedding_dim: int) -> ModelCard:
    card = fake_card()
    return replace(card, arch=replace(card.arch, stage_channels=(embedding_dim,)))


def chunks(n_segments: int, batch: int) -> Iterator[SegmentChunk]:
    """One recording's segments in model batches; the last chunk finishes it."""
    for start in range(0, n_segments, batch):
        index = torch.arange(start, min(start + batch, n_segments))
        last = start + batch >= n_segments
        outcome = RecordingOutcome(0, RecordingStatus.LABELED, n_segments=n_segments, duration_s=n_segments)
        yield SegmentChunk(
            torch.zeros_like(index),
            index,
            index * 16_000,
            (index + 1) * 16_000,
            torch.full_like(index, 16_000),
            torch.zeros(len(index), 1),
            (outcome,) if last else (),
        )


def outputs(n: int, embedding_dim: int, rng: np.random.Generator) -> TopK:
    values = np.sort(rng.random((n, TOP_K), dtype=np.float32), axis=1)[:, ::-1].copy()
    indices = np.tile(np.arange(TOP_K, dtype=np.int64), (n, 1))
    return TopK(values, indices, rng.standard_normal((n, embedding_dim), dtype=np.float32))


@dataclass
class RecordedPart:
    row_groups: list[int] = field(default_factory=list)
    committed: bool = False

    def write(self, segments: pa.Table) -> None:
        self.row_groups.append(segments.num_rows)

    def commit(self, recordings: pa.Table) -> str:
        self.committed = True
        return "part"

    def abort(self) -> None:
        raise AssertionError("nothing failed")


@dataclass
class RecordingStreamSink:
    """A streaming sink that only records what is written where."""

    parts: list[RecordedPart] = field(default_factory=list)

    def open_part(self, schema: pa.Schema) -> RecordedPart:
        self.parts.append(RecordedPart())
        return self.parts[-1]

    def write_part(self, segments: pa.Table, recordings: pa.Table) -> str:
        raise AssertionError("a streamed recording commits through its own part")


@pytest.mark.parametrize("embedding_dim", [2, 256, 1024])
def test_rows_held_stay_under_the_byte_budget_whatever_the_embedding_width(embedding_dim: int) -> None:
    budget = 64 << 10
    ref = RecordingRef("file:///long.wav", 1, 0.0)
    collector = RowCollector([ref], card_of_width(embedding_dim), "run-1", "h", spill_bytes=budget)
    sink, rng, held = RecordingStreamSink(), np.random.default_rng(0), []
    for chunk in chunks(N_SEGMENTS, BATCH):
        collector.add(chunk, outputs(len(chunk), embedding_dim, rng))
        collector.spill(sink)  # type: ignore[arg-type]
        held.append(collector.held_bytes)

    (part,) = sink.parts
    assert part.committed and sum(part.row_groups) == N_SEGMENTS
    assert max(held) < budget  # what is held between chunks never reaches the budget
    row_bytes = 4 * 8 + TOP_K * (4 + 8) + 4 * embedding_dim
    # each row group holds the budget's worth of rows (rounded up to a batch): wider rows, fewer
    expected = -(-budget // row_bytes // BATCH) * BATCH
    assert expected < N_SEGMENTS and part.row_groups[:-1] == [expected] * (len(part.row_groups) - 1)


def test_the_spill_budget_defaults_to_spill_bytes_and_must_be_positive() -> None:
    assert RowCollector([], fake_card(), "run-1", "h").spill_bytes == SPILL_BYTES
    with pytest.raises(ValueError, match="spill_bytes must be positive"):
        RowCollector([], fake_card(), "run-1", "h", spill_bytes=0)


def test_the_streamed_part_writes_the_embedding_without_a_dictionary(tmp_path: Path) -> None:
    card = card_of_width(64)
    ref = RecordingRef(str(tmp_path / "long.wav"), 1, 0.0)
    sink = ParquetSink(str(tmp_path / "out"), card.name, card.version, "run-1")
    collector = RowCollector([ref], card, "run-1", "h", spill_bytes=16 << 10)
    rng = np.random.default_rng(0)
    for chunk in chunks(200, BATCH):
        collector.add(chunk, outputs(len(chunk), 64, rng))
        collector.spill(sink)

    (path,) = (tmp_path / "out" / S.SEGMENTS).glob("model=*/part-*.parquet")
    metadata = pq.read_metadata(path)
    assert metadata.num_row_groups > 1 and metadata.num_rows == 200
    encodings = {
        metadata.row_group(0).column(i).path_in_schema: metadata.row_group(0).column(i).encodings
        for i in range(metadata.num_columns)
    }
    assert "RLE_DICTIONARY" not in encodings["embedding.list.element"]
    assert "RLE_DICTIONARY" in encodings["labels.list.element"] and "RLE_DICTIONARY" in encodings["uri"]
    plain = {"embedding.list.element", S.EMBEDDING_F16}
    assert set(dictionary_columns(collector.schema)) == set(encodings) - plain
    assert_float16_copy(path)


def assert_float16_copy(path: Path) -> None:
    """The part carries ``embedding_f16``: each embedding as float16, plain and uncompressed."""
    group = pq.read_metadata(path).row_group(0)
    chunks = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    f16 = chunks[S.EMBEDDING_F16]
    assert "RLE_DICTIONARY" not in f16.encodings and f16.compression == "UNCOMPRESSED"
    assert f16.statistics is None and chunks["uri"].compression == "ZSTD"
    table = pq.read_table(path, columns=[S.EMBEDDING, S.EMBEDDING_F16])
    dim = table.schema.field(S.EMBEDDING).type.list_size
    stored = np.frombuffer(b"".join(table.column(S.EMBEDDING_F16).to_pylist()), "<f2").reshape(-1, dim)
    expected = np.array(table.column(S.EMBEDDING).to_pylist(), np.float32).astype(np.float16)
    assert table.num_rows > 0 and np.array_equal(stored, expected)


def test_a_buffered_part_writes_the_embedding_without_a_dictionary(tmp_path: Path) -> None:
    """Short recordings are committed together in one write_part: same encodings as a streamed part."""
    card = card_of_width(64)
    sink = ParquetSink(str(tmp_path / "out"), card.name, card.version, "run-1")
    rng = np.random.default_rng(0)
    schema = S.segments_schema(64)
    segments = pa.table(
        {
            S.RECORDING_ID: ["r"] * 50,
            S.URI: ["file:///r.wav"] * 50,
            S.SEGMENT_INDEX: pa.array(range(50), pa.int32()),
            S.START_S: [5.0 * i for i in range(50)],
            S.END_S: [5.0 * i + 5 for i in range(50)],
            S.START_SAMPLE: [0] * 50,
            S.END_SAMPLE: [1] * 50,
            S.LABELS: [["dog", "rain"]] * 50,
            S.CONFIDENCES: [[0.5, 0.25]] * 50,
            S.EMBEDDING: list(rng.standard_normal((50, 64)).astype(np.float32)),
            S.DETECTED: [["dog"]] * 50,
            S.AUDIOSET_LABELS: [None] * 50,
            S.AUDIOSET_SCORES: [None] * 50,
            S.MODEL_NAME: [card.name] * 50,
            S.MODEL_VERSION: [card.version] * 50,
            S.CONFIG_HASH: ["h"] * 50,
            S.RUN_ID: ["run-1"] * 50,
        },
        schema=schema,
    )
    sink.write_part(segments, S.RECORDINGS_SCHEMA.empty_table())

    (path,) = (tmp_path / "out" / S.SEGMENTS).glob("model=*/part-*.parquet")
    column = pq.read_metadata(path).row_group(0)
    encodings = {
        column.column(i).path_in_schema: column.column(i).encodings for i in range(column.num_columns)
    }
    assert "RLE_DICTIONARY" not in encodings["embedding.list.element"]
    assert "RLE_DICTIONARY" in encodings["labels.list.element"]
    assert_float16_copy(path)


# A run with a tiny spill budget streams every recording into its own part, one row group per
# batch: into an S3 OUT (one multipart upload per part) it gives the rows a local OUT gets.


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    write_noise(folder / "long.wav", 40.0, seed=1)
    write_noise(folder / "short.wav", 6.0, seed=2)
    truncated_flac(folder / "cut.flac", seconds=120.0)  # fails ~40 s in: its streamed part is aborted
    return folder


def label(source: Path, out: str, model_dir: Path, spill_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "RowCollector", functools.partial(RowCollector, spill_bytes=spill_bytes))
    config = LabelConfig.of(source=str(source), out=out, model_dir=str(model_dir), workers=0, batch_size=2)
    summary = pipeline.label_archive(config)
    assert (summary.n_labeled, summary.n_failed) == (2, 1)


def segments_files(out: str) -> dict[str, int]:
    """File name -> row groups of each segments file under OUT."""
    fs, root = url_to_fs(out)
    fs.invalidate_cache()
    found = {}
    for path in fs.glob(f"{root}/{S.SEGMENTS}/model=*/*"):
        with fs.open(path, "rb") as handle:
            found[path.rsplit("/", 1)[1]] = pq.read_metadata(handle).num_row_groups
    return found


def test_a_run_spilling_into_s3_gives_the_rows_of_a_local_run(
    archive: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, local = str(tmp_path / "reference"), str(tmp_path / "local")
    label(archive, reference, tiny_model_dir, 10**9, monkeypatch)  # no spill: whole recordings
    label(archive, local, tiny_model_dir, 1, monkeypatch)  # every batch streamed
    aborted: list[str] = []
    abort = sink_module.PartWriter.abort

    def record_abort(writer: sink_module.PartWriter) -> None:
        aborted.append(writer._target)
        abort(writer)

    monkeypatch.setattr(sink_module.PartWriter, "abort", record_abort)
    with moto_bucket() as bucket:
        remote = f"{bucket}/out"
        label(archive, remote, tiny_model_dir, 1, monkeypatch)

        assert_same_segments(remote, local, atol=0.0)
        assert_same_segments(remote, reference)
        recordings = "SELECT uri, status, n_segments FROM recordings ORDER BY uri"
        assert run_sql(remote, recordings).rows == run_sql(local, recordings).rows
        assert len(run_sql(remote, SEGMENT_KEYS).rows) == 8 + 2  # 40 s and 6 s in 5-second windows
        streamed = segments_files(remote)
        assert len(streamed) == 2 and max(streamed.values()) > 1  # the long one written batch by batch
        # the cut FLAC had streamed rows when it failed: its upload was aborted, no object left
        ((fs_target),) = aborted
        assert posixpath.basename(fs_target) not in streamed
        assert not url_to_fs(remote)[0].exists(fs_target)


# A worker builds each chunk in one buffer: in shared memory, so handing it to the run copies nothing.


@pytest.mark.parametrize("shared", [False, True])
def test_a_chunk_is_built_in_one_buffer_holding_the_pieces(shared: bool) -> None:
    rng = np.random.default_rng(0)
    pieces = [
        SegmentPiece(7, Segment(i, 10 * i, 10 * i + 10), rng.standard_normal(5).astype(np.float32), 8_000)
        for i in range(3)
    ]
    builder = _ChunkBuilder(window=5, batch_size=4, shared=shared)
    for piece in pieces:
        builder.add(piece)

    chunk = builder.take()

    assert torch.equal(chunk.waveforms, torch.from_numpy(np.stack([p.waveform for p in pieces])))
    assert chunk.waveforms.is_shared() == shared
    assert chunk.segment_index.tolist() == [0, 1, 2] and chunk.start_sample.tolist() == [0, 10, 20]
    assert chunk.recording_index.tolist() == [7] * 3 and chunk.sample_rate_hz.tolist() == [8_000] * 3
    assert builder.pieces == [] and builder.waves is None  # the next chunk gets a buffer of its own
