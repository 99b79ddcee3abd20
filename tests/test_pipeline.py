from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from torch.utils.data import DataLoader

from audify_batch.ingest.loader import RecordingOutcome, SegmentDataset
from audify_batch.ingest.segments import SegmentingConfig, plan_segments
from audify_batch.ingest.sources import discover
from audify_batch.model.checkpoint import read_card
from audify_batch.run.config import LabelConfig
from audify_batch.run.host import worker_start_method
from audify_batch.run.pipeline import label_archive
from audify_batch.store import schema as S
from audify_batch.store.query import run_query_file, run_sql
from tests.archive_builders import bad_files, real_archive
from tests.conftest import write_noise, write_tone


def table(out: Path, name: str):
    files = sorted((out / name).glob("model=*/*.parquet"))
    return pq.ParquetDataset([str(f) for f in files]).read() if files else None


def segment_keys(out: Path) -> list[tuple[str, int]]:
    rows = run_sql(str(out), "SELECT uri, segment_index FROM segments ORDER BY ALL").rows
    return [(uri, int(i)) for uri, i in rows]


@pytest.mark.parametrize("n_workers", [0, 1, 3])
def test_dataloader_sharding_gives_every_segment_once(tmp_path: Path, n_workers: int) -> None:
    seconds = [0.5, 5.0, 12.0, 7.5, 20.0, 3.0, 9.99]
    for i, s in enumerate(seconds):
        write_noise(tmp_path / f"r{i}.wav", s, 8_000 if i % 2 else 16_000, seed=i)
    refs = discover(str(tmp_path))
    dataset = SegmentDataset(refs, SegmentingConfig(hop_s=2.5).grid(5.0, 16_000), batch_size=4)
    context = worker_start_method() if n_workers else None
    loader = DataLoader(dataset, batch_size=None, num_workers=n_workers, multiprocessing_context=context)
    seen: Counter[tuple[int, int]] = Counter()
    outcomes: list[RecordingOutcome] = []
    for chunk in loader:
        seen.update(zip(chunk.recording_index.tolist(), chunk.segment_index.tolist(), strict=True))
        outcomes.extend(chunk.finished)
    expected = set()
    for index, ref in enumerate(refs):
        rate = 8_000 if "r1" in ref.uri or "r3" in ref.uri or "r5" in ref.uri else 16_000
        n = round(seconds[int(Path(ref.uri).stem[1:])] * rate)
        expected |= {
            (index, s.index) for s in plan_segments(n, 5 * rate, rate * 5 // 2, min_last_samples=rate)
        }
    assert set(seen) == expected and set(seen.values()) == {1}
    assert sorted(o.index for o in outcomes) == list(range(len(refs)))
    assert all(o.status == S.STATUS_LABELED for o in outcomes)


@pytest.fixture(scope="module")
def real_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """Three 30-second FLACs of real fold-4 clips, labeled by the shipped model."""
    tmp_path = tmp_path_factory.mktemp("real")
    recordings = real_archive(shared_data, tmp_path / "archive", n_files=3, clips_per_file=6)
    out = tmp_path / "out"
    summary = label_archive(LabelConfig.of(source=str(tmp_path / "archive"), out=str(out), top_k=3))
    return recordings, out, summary


def test_real_clips_joined_end_to_end_are_labeled(real_run) -> None:
    recordings, out, summary = real_run
    assert (summary.n_labeled, summary.n_failed, summary.n_segments) == (3, 0, 18)
    rows = run_sql(
        str(out),
        "SELECT uri, segment_index, start_sample, end_sample, start_s, labels "
        "FROM segments ORDER BY uri, segment_index",
    ).rows
    by_uri = {str(r.path): r.categories for r in recordings}
    hits = 0
    for uri, index, start, end, start_s, labels in rows:
        assert (start, end) == (index * 220_500, (index + 1) * 220_500) and start_s == index * 5.0
        hits += by_uri[uri][index] in labels
    assert hits >= 0.8 * len(rows), f"true class in top 3 for {hits} of {len(rows)} segments"
    embedding_dim = run_sql(str(out), "SELECT len(embedding) FROM segments LIMIT 1").rows[0][0]
    assert embedding_dim == read_card("default").embedding_dim == 1024


def test_every_view_and_query_runs_on_real_output(real_run) -> None:
    recordings, out, _ = real_run
    views = ("segments", "recordings", "recording_history", "runs", "labels", "detections", "audioset_labels")
    for view in (*views, "embeddings"):
        assert len(run_sql(str(out), f"SELECT * FROM {view}")) > 0, view
    uri = str(recordings[0].path)
    top_label = run_sql(
        str(out),
        "SELECT label FROM labels WHERE rank = 1 GROUP BY label ORDER BY count(*) DESC, label LIMIT 1",
    ).rows[0][0]
    params = {
        "label_counts": {},
        "top_segments": {"label": top_label, "limit": 3},
        "timeline": {"uri": uri},
        "events": {"uri": None},
        "similar_segments": {"uri": uri, "segment_index": 2, "limit": 5},
    }
    for name, values in params.items():
        assert len(run_query_file(str(out), name, values)) > 0, name
    timeline = run_query_file(str(out), "timeline", {"uri": uri})
    assert len(timeline) == 6
    events = run_query_file(str(out), "events", {"uri": uri})
    assert sum(events.column("n_segments")) == 6
    similar = run_query_file(str(out), "similar_segments", {"uri": uri, "segment_index": 2, "limit": 5})
    assert (uri, 2) not in list(zip(similar.column("uri"), similar.column("segment_index"), strict=True))


def test_rerun_labels_only_new_or_changed_and_models_stay_apart(tiny_model_dir: Path, tmp_path: Path) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    for i in range(4):
        write_noise(archive / f"a{i}.flac", 6.0, seed=i)
    config = LabelConfig.of(source=str(archive), out=str(out), model_dir=str(tiny_model_dir), workers=1)
    first = label_archive(config)
    assert (first.n_labeled, first.n_skipped) == (4, 0)
    again = label_archive(config)
    assert (again.n_labeled, again.n_skipped, again.n_segments) == (0, 4, 0)
    write_noise(archive / "a1.flac", 11.0, seed=42)  # changed
    write_noise(archive / "new.flac", 3.0, seed=7)  # new
    third = label_archive(config)
    assert (third.n_labeled, third.n_skipped) == (2, 3)
    keys = segment_keys(out)
    assert len(keys) == len(set(keys)) == 3 * 2 + 3 + 1  # 6 s -> 2 segments; a1 now 11 s -> 3
    other = tmp_path / "model-v2"
    shutil.copytree(tiny_model_dir, other)
    card = (other / "model_card.json").read_text().replace('"version": "0.1"', '"version": "0.2"')
    (other / "model_card.json").write_text(card)
    label_archive(LabelConfig.of(source=str(archive), out=str(out), model_dir=str(other), workers=0))
    models = list(
        run_sql(str(out), "SELECT model, count(*) FROM segments GROUP BY model ORDER BY model").rows
    )
    assert models == [("tiny-fake-0.1", 10), ("tiny-fake-0.2", 10)]


def test_bad_files_fail_with_reasons_and_good_rows_are_intact(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    kinds = bad_files(archive)
    for i in range(3):
        write_noise(archive / f"good{i}.wav", 7.0, seed=i)
    locked = write_noise(archive / "locked.wav", 7.0, seed=99)
    listing = tmp_path / "list.txt"
    entries = [*sorted(p.name for p in archive.iterdir() if p.is_file()), "missing.wav"]
    listing.write_text("\n".join(str(archive / e) for e in entries) + "\n")

    import audify_batch.ingest.loader as loader

    real_open = loader._open_stream

    def deny(uri: str, *args, **kwargs):
        if uri == str(locked):
            raise PermissionError(13, "Permission denied", uri)
        return real_open(uri, *args, **kwargs)

    monkeypatch.setattr(loader, "_open_stream", deny)
    out = tmp_path / "out"
    summary = label_archive(
        LabelConfig.of(source=str(listing), out=str(out), model_dir=str(tiny_model_dir), workers=0)
    )
    failed = dict(summary.failures)
    assert summary.n_labeled == 3 and summary.n_failed == len(kinds) + 2
    reasons = {Path(uri).name: reason for uri, reason in failed.items()}
    assert "empty" in reasons["empty.wav"] and "zero-length" in reasons["zero_length.wav"]
    assert "not readable as audio" in reasons["notes.mp3"] and reasons["corrupt.flac"]
    assert reasons["truncated.flac"] and reasons["locked.wav"] == "permission denied"
    assert reasons["missing.wav"] == "no such file"
    current = list(
        run_sql(str(out), "SELECT status, count(*) FROM recordings GROUP BY ALL ORDER BY ALL").rows
    )
    assert current == [("failed", len(kinds) + 2), ("labeled", 3)]
    good_only = tmp_path / "good"
    label_archive(
        LabelConfig.of(
            source=str(archive / "good*.wav"), out=str(good_only), model_dir=str(tiny_model_dir), workers=0
        )
    )
    sql = "SELECT uri, segment_index, labels, confidences FROM segments ORDER BY ALL"
    assert run_sql(str(out), sql).rows == run_sql(str(good_only), sql).rows


@pytest.mark.parametrize(
    ("name", "seconds", "rate_hz", "channels", "kind"),
    [
        ("eight_channels.wav", 11.0, 48_000, 8, "noise"),
        ("low_rate.wav", 9.0, 8_000, 1, "noise"),
        ("high_rate.flac", 6.0, 192_000, 2, "noise"),
        ("one_sample.wav", 1 / 16_000, 16_000, 1, "noise"),
        ("silence.wav", 10.0, 22_050, 1, "silence"),
        ("clipped.wav", 5.0, 44_100, 1, "clipped"),
    ],
)
def test_odd_but_valid_audio_is_labeled(
    tiny_model_dir: Path, tmp_path: Path, name: str, seconds: float, rate_hz: int, channels: int, kind: str
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    path = archive / name
    if kind == "noise":
        write_noise(path, seconds, rate_hz, channels=channels)
    elif kind == "silence":
        write_tone(path, seconds, rate_hz, freq_hz=0.0)
    else:  # clipped hard: a 440 Hz sine at five times full scale, cut at +-1
        t = np.arange(round(seconds * rate_hz)) / rate_hz
        sf.write(str(path), np.clip(5.0 * np.sin(2 * np.pi * 440 * t), -1, 1), rate_hz, subtype="PCM_16")
        written, written_rate_hz = sf.read(str(path), dtype="float32")
        assert written_rate_hz == rate_hz and len(written) == len(t)
        at_full_scale = np.abs(written) >= 32_767 / 32_768
        assert 0.8 < at_full_scale.mean() < 0.95  # |5 sin| >= 1 for ~87 % of the samples
    out = tmp_path / "out"
    summary = label_archive(
        LabelConfig.of(source=str(archive), out=str(out), model_dir=str(tiny_model_dir), workers=0)
    )
    n = round(seconds * rate_hz)
    expected = plan_segments(n, 5 * rate_hz, 5 * rate_hz, min_last_samples=rate_hz)
    assert (summary.n_labeled, summary.n_failed, summary.n_segments) == (1, 0, len(expected))
    rows = run_sql(
        str(out), "SELECT start_sample, end_sample, end_s, confidences FROM segments ORDER BY segment_index"
    ).rows
    assert [(r[0], r[1]) for r in rows] == [(s.start_sample, s.end_sample) for s in expected]
    assert rows[-1][2] == pytest.approx(n / rate_hz)
    assert all(0.0 <= c <= 1.0 for r in rows for c in r[3])
    recording = run_sql(str(out), "SELECT sample_rate_hz, channels FROM recordings").rows[0]
    assert recording == (rate_hz, channels)
