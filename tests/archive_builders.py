"""Build small archives for pipeline tests: real ESC-50 clips joined end to end, bad files, odd audio."""

from __future__ import annotations

import csv
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf


@dataclass(frozen=True)
class LongRecording:
    path: Path
    categories: tuple[str, ...]  # the class of each 5-second segment, in order


def fold4_clips(shared_data: Path) -> list[tuple[Path, str]]:
    folder = shared_data / "esc50-fold4-44k"
    with (folder / "fold4.csv").open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["filename"])
    return [(folder / "audio" / row["filename"], row["category"]) for row in rows]


def join_clips(path: Path, clips: list[tuple[Path, str]]) -> LongRecording:
    """One 44.1 kHz FLAC of whole 5-second clips: clip boundaries fall on segment boundaries."""
    with sf.SoundFile(str(path), "w", 44_100, 1, subtype="PCM_16") as out:
        for clip, _ in clips:
            data, rate = sf.read(str(clip), dtype="float32")
            assert rate == 44_100 and len(data) == 220_500
            out.write(data)
    return LongRecording(path, tuple(category for _, category in clips))


def real_archive(
    shared_data: Path, folder: Path, n_files: int, clips_per_file: int, step: int = 7
) -> list[LongRecording]:
    clips = fold4_clips(shared_data)[::step]
    folder.mkdir(parents=True, exist_ok=True)
    return [
        join_clips(folder / f"long{i:02d}.flac", clips[i * clips_per_file : (i + 1) * clips_per_file])
        for i in range(n_files)
    ]


def zero_length_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16_000)
        handle.writeframes(b"")
    return path


def truncated_flac(path: Path, seconds: float = 30.0) -> Path:
    rng = np.random.default_rng(5)
    sf.write(str(path), 0.2 * rng.standard_normal(int(seconds * 16_000)), 16_000, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def bad_files(folder: Path) -> dict[str, str]:
    """Write the bad-input corpus; returns file name -> kind."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(9)
    (folder / "corrupt.flac").write_bytes(b"fLaC" + rng.bytes(5_000))
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.mp3").write_text("this is a text file, not audio\n" * 20)
    (folder / "dir.wav").mkdir()
    (folder / "dir.wav" / "inner.txt").write_text("x")
    zero_length_wav(folder / "zero_length.wav")
    truncated_flac(folder / "truncated.flac")
    return {
        "corrupt.flac": "corrupt",
        "empty.wav": "empty",
        "notes.mp3": "non-audio",
        "zero_length.wav": "zero-length",
        "truncated.flac": "truncated",
    }
