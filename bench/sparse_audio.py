"""Very long recordings at no disk cost: RF64 WAV files of silence, written as sparse files.

A 100-hour 16 kHz PCM_16 recording is 11.5 GB of samples; written as a header plus a
hole (``truncate``), it takes a few KiB on disk and reads back as zeros, so the labeling
run decodes, segments, scores and commits every one of its 72,000 segments.
RF64 (EBU Tech 3306) is WAV with 64-bit sizes, which libsndfile reads.
"""

from __future__ import annotations

import struct
from pathlib import Path

SAMPLE_RATE_HZ = 16_000
BYTES_PER_SAMPLE = 2  # PCM_16 mono
_DS64_SIZE = 28
_FMT_SIZE = 16
_NO_SIZE = 0xFFFFFFFF  # a 32-bit size field whose value lives in the ds64 chunk


def rf64_header(n_frames: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> bytes:
    """The header of a mono PCM_16 RF64 file of ``n_frames`` frames (data follows it)."""
    if n_frames <= 0 or sample_rate_hz <= 0:
        raise ValueError("n_frames and sample_rate_hz must be positive")
    data_bytes = n_frames * BYTES_PER_SAMPLE
    header_bytes = 12 + (8 + _DS64_SIZE) + (8 + _FMT_SIZE) + 8
    riff_bytes = header_bytes - 8 + data_bytes
    ds64 = struct.pack("<4sIQQQI", b"ds64", _DS64_SIZE, riff_bytes, data_bytes, n_frames, 0)
    byte_rate = sample_rate_hz * BYTES_PER_SAMPLE
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", _FMT_SIZE, 1, 1, sample_rate_hz, byte_rate, BYTES_PER_SAMPLE, 16)
    header = (
        struct.pack("<4sI4s", b"RF64", _NO_SIZE, b"WAVE")
        + ds64
        + fmt
        + struct.pack("<4sI", b"data", _NO_SIZE)
    )
    if len(header) != header_bytes:
        raise ValueError("RF64 header size mismatch")  # pragma: no cover - layout constant
    return header


def silent_recording(folder: Path, hours: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> Path:
    """A sparse RF64 file of ``hours`` of silence in ``folder`` (created once, then reused)."""
    n_frames = round(hours * 3600 * sample_rate_hz)
    path = folder / f"silent-{hours:g}h-{sample_rate_hz}.wav"
    header = rf64_header(n_frames, sample_rate_hz)
    size = len(header) + n_frames * BYTES_PER_SAMPLE
    if path.is_file() and path.stat().st_size == size:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(header)
        handle.truncate(size)
    return path
