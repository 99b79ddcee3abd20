from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audify_batch.ingest.audio_io import AudioDecodeError, probe, read_mono, resample, stream_mono
from tests.conftest import write_tone


@pytest.mark.parametrize("rate_hz", [8_000, 16_000, 22_050, 44_100, 48_000, 192_000])
def test_resampled_length_and_pitch(tmp_path: Path, rate_hz: int) -> None:
    path = write_tone(tmp_path / "tone.wav", 2.0, rate_hz, freq_hz=1_000.0)
    audio = read_mono(path, 16_000)
    assert abs(len(audio) - 32_000) <= 1
    spectrum = np.abs(np.fft.rfft(audio[4_000:20_000]))
    peak_hz = np.argmax(spectrum) * 16_000 / 16_000  # 16,000-sample window: 1 Hz bins
    assert abs(peak_hz - 1_000.0) <= 2.0


def test_streaming_in_small_blocks_equals_one_shot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.uniform(-0.5, 0.5, size=(44_100 * 3, 2)).astype(np.float32)
    path = tmp_path / "noise.flac"
    sf.write(str(path), data, 44_100, subtype="PCM_24")
    streamed = np.concatenate(list(stream_mono(path, 16_000, block_frames=4_096)))
    decoded, _ = sf.read(str(path), dtype="float32")
    whole = resample(decoded.mean(axis=1, dtype=np.float32), 44_100, 16_000)
    assert abs(len(streamed) - len(whole)) <= 1
    n = min(len(streamed), len(whole))
    np.testing.assert_allclose(streamed[100 : n - 100], whole[100 : n - 100], atol=2e-3)


def test_multichannel_is_downmixed_to_mono(tmp_path: Path) -> None:
    t = np.arange(16_000) / 16_000
    left = 0.4 * np.sin(2 * np.pi * 300 * t)
    path = tmp_path / "eight.wav"
    sf.write(str(path), np.stack([left] + [np.zeros_like(t)] * 7, axis=1), 16_000, subtype="FLOAT")
    mono = read_mono(path, 16_000)
    np.testing.assert_allclose(mono, left / 8, atol=1e-6)
    assert probe(path).channels == 8


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not audio at all" * 10, b"RIFF\x24\x00\x00\x00WAVEfmt "],
    ids=["empty", "text", "truncated-header"],
)
def test_unreadable_files_raise_decode_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError, match="not readable as audio"):
        read_mono(path, 16_000)


def test_missing_and_forbidden_files(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError):
        probe(tmp_path / "nope.wav")
    path = write_tone(tmp_path / "locked.wav", 0.1, 16_000)
    os.chmod(path, 0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read any file (root)")
        with pytest.raises(AudioDecodeError):
            read_mono(path, 16_000)
    finally:
        os.chmod(path, 0o644)
