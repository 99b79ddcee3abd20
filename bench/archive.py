"""Benchmark archives built from ../shared/data (never committed) or synthesised: long FLAC recordings."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CACHE = Path("/tmp/audify-bench")


def fold4_archive(n_files: int = 8, clips_per_file: int = 50) -> Path:
    """n_files FLACs of clips_per_file consecutive fold-4 clips each (default 8 x 250 s = 33 min)."""
    folder = CACHE / f"fold4-{n_files}x{clips_per_file}"
    if folder.is_dir() and len(list(folder.glob("*.flac"))) == n_files:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    source = SHARED / "esc50-fold4-44k"
    with (source / "fold4.csv").open(newline="") as handle:
        names = sorted(row["filename"] for row in csv.DictReader(handle))
    for i in range(n_files):
        with sf.SoundFile(str(folder / f"long{i:02d}.flac"), "w", 44_100, 1, subtype="PCM_16") as out:
            for name in names[i * clips_per_file : (i + 1) * clips_per_file]:
                out.write(sf.read(str(source / "audio" / name), dtype="float32")[0])
    return folder


def long_recording(hours: float, sample_rate_hz: int = 16_000) -> Path:
    """One long FLAC of slowly changing tones with a little noise, written in blocks."""
    path = CACHE / f"long-{hours:g}h-{sample_rate_hz}.flac"
    if path.is_file():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    block_s = 60
    n_blocks = round(hours * 3600 / block_s)
    t = np.arange(block_s * sample_rate_hz) / sample_rate_hz
    tmp = path.with_suffix(".tmp.flac")
    with sf.SoundFile(str(tmp), "w", sample_rate_hz, 1, subtype="PCM_16") as out:
        for block in range(n_blocks):
            freq = 200 + 50 * (block % 30)
            signal = 0.3 * np.sin(2 * np.pi * freq * t) + 0.003 * rng.standard_normal(t.size)
            out.write(signal.astype(np.float32))
    tmp.rename(path)
    return path
