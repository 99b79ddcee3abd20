"""Benchmark archives built from ../shared/data (never committed) or synthesised: long FLAC recordings."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from training.data import SHARED_DATA

CACHE = Path("/tmp/audify-bench")
CLIP_RATE_HZ = 44_100
CLIP_SAMPLES = 5 * CLIP_RATE_HZ  # every fold-4 clip is exactly one 5-second segment


@dataclass(frozen=True)
class LongRecording:
    path: Path
    categories: tuple[str, ...]  # the class of each 5-second segment, in order


def fold4_clips(shared_data: Path = SHARED_DATA) -> list[tuple[Path, str]]:
    """(path, category) of the 400 fold-4 clips at 44.1 kHz, by file name."""
    folder = shared_data / "esc50-fold4-44k"
    with (folder / "fold4.csv").open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["filename"])
    return [(folder / "audio" / row["filename"], row["category"]) for row in rows]


def join_clips(path: Path, clips: list[tuple[Path, str]]) -> LongRecording:
    """One 44.1 kHz FLAC of whole 5-second clips: clip boundaries fall on segment boundaries."""
    with sf.SoundFile(str(path), "w", CLIP_RATE_HZ, 1, subtype="PCM_16") as out:
        for clip, _ in clips:
            data, rate_hz = sf.read(str(clip), dtype="float32")
            if rate_hz != CLIP_RATE_HZ or data.shape != (CLIP_SAMPLES,):
                raise ValueError(f"{clip}: {rate_hz} Hz, shape {data.shape}; need mono 5 s at 44.1 kHz")
            out.write(data)
    return LongRecording(path, tuple(category for _, category in clips))


def fold4_archive(n_files: int = 8, clips_per_file: int = 50) -> Path:
    """n_files FLACs of clips_per_file consecutive fold-4 clips each (default 8 x 250 s = 33 min)."""
    folder = CACHE / f"fold4-{n_files}x{clips_per_file}"
    if folder.is_dir() and len(list(folder.glob("*.flac"))) == n_files:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    clips = fold4_clips()
    for i in range(n_files):
        join_clips(folder / f"long{i:02d}.flac", clips[i * clips_per_file : (i + 1) * clips_per_file])
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
