from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.query import run_sql


def write_hours(path: Path, hours: float, sample_rate_hz: int) -> None:
    """A long FLAC written a minute at a time (never whole in memory)."""
    t = np.arange(60 * sample_rate_hz) / sample_rate_hz
    with sf.SoundFile(str(path), "w", sample_rate_hz, 1, subtype="PCM_16") as out:
        for minute in range(round(hours * 60)):
            out.write((0.2 * np.sin(2 * np.pi * (100 + minute % 50 * 20) * t)).astype(np.float32))


@pytest.mark.slow
def test_twelve_hour_recording_is_labeled_with_exact_bounds(tiny_model_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    write_hours(archive / "twelve_hours.flac", 12.0, 8_000)
    out = tmp_path / "out"
    summary = label_archive(
        LabelConfig.of(source=str(archive), out=str(out), model_dir=str(tiny_model_dir), batch_size=256)
    )
    assert (summary.n_labeled, summary.n_failed, summary.n_segments) == (1, 0, 12 * 720)
    first, last, count, distinct = run_sql(
        str(out),
        "SELECT min(start_sample), max(end_sample), count(*), count(DISTINCT segment_index) FROM segments",
    ).rows[0]
    assert (first, last, count, distinct) == (0, 12 * 3600 * 8_000, 8_640, 8_640)
    assert run_sql(str(out), "SELECT duration_s FROM recordings").rows[0][0] == 43_200.0
