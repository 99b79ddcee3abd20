"""The run loop with fakes: a real SegmentDataset over synthesised WAVs, a fake model, an in-memory sink."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from audify_batch.ingest.loader import SegmentChunk, SegmentDataset
from audify_batch.ingest.segments import SegmentingConfig
from audify_batch.ingest.sources import RecordingRef, discover
from audify_batch.model.checkpoint import load_checkpoint
from audify_batch.model.inference import Precision, TorchModel, predict_batch, prepare_for_inference
from audify_batch.model.outputs import TopK
from audify_batch.run.config import LabelConfig, OutputConfig
from audify_batch.run.pipeline import ArchiveSource, find_recordings, run_loop
from audify_batch.run.rows import RowCollector
from audify_batch.store import schema as S
from tests.archive_builders import truncated_flac
from tests.conftest import write_tone
from tests.fakes import FakeModel, InMemorySink, LoggingCollector, LoggingGate, fake_card

RATE_HZ = 16_000  # the fake card's model rate: no resampling
NO_TIME_COMMITS = 1e9  # commit_every_s: only the segment count triggers commits


def chunks_of(refs: list[RecordingRef], batch_size: int) -> list[SegmentChunk]:
    """The chunks a real DataLoader yields for ``refs`` (decoded in this process, in order)."""
    grid = SegmentingConfig().grid(fake_card().segment_s, RATE_HZ)
    dataset = SegmentDataset(refs, grid, batch_size)
    return list(DataLoader(dataset, batch_size=None, num_workers=0))


def output(out: Path, top_k: int = 3, commit_every_segments: int = 20_000) -> OutputConfig:
    return OutputConfig(str(out), top_k, commit_every_segments, NO_TIME_COMMITS)


def collector_for(refs: list[RecordingRef], events: list[str] | None = None) -> LoggingCollector:
    return LoggingCollector(refs, fake_card(), "run-1", "hash-1", events=[] if events is None else events)


def write_level(path: Path, seconds: float, amplitude: float) -> Path:
    """A 440 Hz tone at the fake model's rate: each whole second has RMS ``amplitude / sqrt(2)``."""
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    sf.write(str(path), amplitude * np.sin(2 * np.pi * 440.0 * t), RATE_HZ, subtype="PCM_16")
    return path


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """loud: 3 s at RMS 0.297; quiet: 2 s at RMS 0.049; broken: a FLAC cut short (decodes, then fails)."""
    folder = tmp_path / "archive"
    folder.mkdir()
    write_level(folder / "loud.wav", 3.0, 0.42)
    write_level(folder / "quiet.wav", 2.0, 0.07)
    truncated_flac(folder / "broken.flac")
    return folder


def by_name(refs: list[RecordingRef]) -> dict[str, RecordingRef]:
    return {Path(ref.uri).name: ref for ref in refs}


def test_rows_per_recording_in_top_k_order(archive: Path, tmp_path: Path) -> None:
    refs = discover(str(archive))
    sink, model = InMemorySink(), FakeModel()
    collector = collector_for(refs)
    run_loop(chunks_of(refs, batch_size=2), model, collector, sink, output(tmp_path / "out"))

    rows = sink.segments().to_pylist()
    names = by_name(refs)
    per_uri = {uri: [r for r in rows if r[S.URI] == uri] for uri in {r[S.URI] for r in rows}}
    assert sorted(per_uri) == sorted([names["loud.wav"].uri, names["quiet.wav"].uri])
    expected = {
        "loud.wav": (3, ["loud", "medium", "quiet"], 0.42 / np.sqrt(2)),
        "quiet.wav": (2, ["quiet", "silence", "medium"], 0.07 / np.sqrt(2)),
    }
    for name, (n_segments, labels, rms) in expected.items():
        segments = per_uri[names[name].uri]
        assert [r[S.SEGMENT_INDEX] for r in segments] == list(range(n_segments))
        assert [r[S.START_S] for r in segments] == [float(i) for i in range(n_segments)]
        for row in segments:
            assert row[S.LABELS] == labels
            assert row[S.CONFIDENCES] == sorted(row[S.CONFIDENCES], reverse=True)
            assert len(set(row[S.CONFIDENCES])) == 3
            assert row[S.EMBEDDING][0] == pytest.approx(rms, rel=1e-3)
            assert (row[S.RUN_ID], row[S.CONFIG_HASH]) == ("run-1", "hash-1")
    recordings = {Path(r[S.URI]).name: r for r in sink.recordings().to_pylist()}
    assert recordings["loud.wav"][S.N_SEGMENTS] == 3
    assert recordings["quiet.wav"][S.N_SEGMENTS] == 2
    assert collector.counts() == {S.STATUS_LABELED: 2, S.STATUS_FAILED: 1}


def test_top_k_larger_than_the_label_set_keeps_every_label(archive: Path, tmp_path: Path) -> None:
    refs = [by_name(discover(str(archive)))["loud.wav"]]
    sink = InMemorySink()
    run_loop(chunks_of(refs, 4), FakeModel(), collector_for(refs), sink, output(tmp_path, top_k=10))

    for row in sink.segments().to_pylist():
        assert row[S.LABELS] == ["loud", "medium", "quiet", "silence"]


def test_failed_recording_leaves_no_segment_rows_but_a_failed_recordings_row(
    archive: Path, tmp_path: Path
) -> None:
    refs = discover(str(archive))
    broken = by_name(refs)["broken.flac"]
    sink, model = InMemorySink(), FakeModel()
    collector = collector_for(refs)
    run_loop(chunks_of(refs, batch_size=4), model, collector, sink, output(tmp_path))

    assert sum(model.batch_sizes) > 3 + 2  # the model scored segments of the broken file too
    assert broken.uri not in {r[S.URI] for r in sink.segments().to_pylist()}
    (row,) = [r for r in sink.recordings().to_pylist() if r[S.URI] == broken.uri]
    assert row[S.STATUS] == S.STATUS_FAILED
    assert row[S.N_SEGMENTS] == 0
    assert row[S.ERROR]
    assert [uri for uri, _ in collector.failures] == [broken.uri]


def test_parts_are_committed_every_n_segments(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    for name in "abcd":
        write_tone(folder / f"{name}.wav", 1.0, RATE_HZ)
    refs = discover(str(folder))
    chunks = chunks_of(refs, batch_size=1)
    sink = InMemorySink()
    run_loop(chunks, FakeModel(), collector_for(refs), sink, output(tmp_path, commit_every_segments=2))

    # A recording's outcome arrives with the next chunk: a, b ready after chunk 3; c, d at the end.
    parts = [[Path(uri).name for uri in part.column(S.URI).to_pylist()] for part in sink.recording_parts]
    assert parts == [["a.wav", "b.wav"], ["c.wav", "d.wav"]]
    assert [part.num_rows for part in sink.segment_parts] == [2, 2]


def test_commits_wait_for_whole_recordings(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    write_tone(folder / "long.wav", 5.0, RATE_HZ)
    write_tone(folder / "short.wav", 1.0, RATE_HZ)
    refs = discover(str(folder))
    sink = InMemorySink()
    run_loop(
        chunks_of(refs, 2), FakeModel(), collector_for(refs), sink, output(tmp_path, commit_every_segments=2)
    )

    # Every part holds whole recordings, never a part of one.
    for segments, recordings in zip(sink.segment_parts, sink.recording_parts, strict=True):
        uris, n_segments = recordings.column(S.URI).to_pylist(), recordings.column(S.N_SEGMENTS).to_pylist()
        counts = dict(zip(uris, n_segments, strict=True))
        rows = segments.column(S.URI).to_pylist()
        assert {uri: rows.count(uri) for uri in set(rows)} == counts
    assert [p.num_rows for p in sink.segment_parts] == [5, 1]


def test_model_gate_is_held_only_around_model_calls(archive: Path, tmp_path: Path) -> None:
    refs = discover(str(archive))
    chunks = chunks_of(refs, batch_size=1)
    assert any(len(chunk) == 0 for chunk in chunks)  # the last outcome comes alone
    events: list[str] = []
    gate = LoggingGate(events)
    sink = InMemorySink(events=events)
    run_loop(chunks, FakeModel(events=events), collector_for(refs, events), sink, output(tmp_path), gate)

    assert gate.entries == sum(1 for chunk in chunks if len(chunk)) == events.count("predict")
    held = [events[i + 1 : events.index("exit", i)] for i, e in enumerate(events) if e == "enter"]
    assert held == [["predict"]] * gate.entries
    assert events.count("add") == len(chunks)
    assert events.count("write_part") >= 1


def test_a_chunk_with_segments_needs_model_outputs(archive: Path) -> None:
    refs = discover(str(archive))
    chunk = chunks_of(refs, batch_size=2)[0]
    collector = RowCollector(refs, fake_card(), "run-1", "hash-1")
    with pytest.raises(ValueError, match="needs as many model outputs"):
        collector.add(chunk, None)
    one = TopK(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.int64), np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="needs as many model outputs"):
        collector.add(chunk, one)


def test_torch_model_is_predict_batch_then_top_k(tiny_model_dir: Path) -> None:
    network, card = load_checkpoint(tiny_model_dir)
    network = prepare_for_inference(network, torch.device("cpu"))
    model = TorchModel(network, card, Precision.FP32)
    waveforms = torch.from_numpy(np.random.default_rng(3).standard_normal((3, 16_000 * 5)).astype(np.float32))

    outputs = model.predict(waveforms, top_k=4)

    probs, embeddings = predict_batch(network, waveforms, Precision.FP32)
    values, indices = probs.topk(4, dim=1)
    assert np.array_equal(outputs.values, values.numpy())
    assert np.array_equal(outputs.indices, indices.numpy())
    assert np.array_equal(outputs.embeddings, embeddings.numpy())
    assert model.predict(waveforms, top_k=50).indices.shape == (3, len(card.labels))
    with pytest.raises(ValueError, match="resolved precision"):
        TorchModel(network, card, Precision.AUTO)


def test_archive_source_finds_what_find_recordings_finds(archive: Path, tmp_path: Path) -> None:
    config = LabelConfig.of(str(archive), str(tmp_path / "out"))
    assert ArchiveSource(config).recordings() == find_recordings(config)
    assert len(ArchiveSource(config).recordings()) == 3
