"""Build small archives for pipeline tests: real ESC-50 clips joined end to end (the joining is
bench.archive's, shared with the benchmarks), bad files, odd audio."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.archive import LongRecording, fold4_clips, join_clips


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


def cut_in_half(path: Path) -> Path:
    """Keep the first half of the file's bytes, as an interrupted copy or upload would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_wav(path: Path, seconds: float = 30.0, sample_rate_hz: int = 16_000) -> Path:
    """A PCM WAV whose header declares ``seconds`` but whose data holds half of them."""
    rng = np.random.default_rng(11)
    sf.write(str(path), 0.2 * rng.standard_normal(round(seconds * sample_rate_hz)), sample_rate_hz)
    return cut_in_half(path)


def truncated_ogg(path: Path, seconds: float = 30.0, sample_rate_hz: int = 16_000) -> Path:
    """An Ogg Vorbis of ``seconds`` cut in half (Ogg declares no length: only its end is missing)."""
    rng = np.random.default_rng(12)
    data = 0.2 * rng.standard_normal(round(seconds * sample_rate_hz))
    sf.write(str(path), data, sample_rate_hz, format="OGG", subtype="VORBIS")
    return cut_in_half(path)
