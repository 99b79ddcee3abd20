from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import settings

# Deterministic property tests: fixed examples, no wall-clock deadline.
settings.register_profile("audify", derandomize=True, deadline=None, max_examples=200)
settings.load_profile("audify")

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "esc50" / "meta" / "esc50.csv").is_file():
        pytest.fail(f"ESC-50 data not found at {SHARED_DATA.resolve()} (see README: ../shared/data)")
    return SHARED_DATA


def write_tone(
    path: Path,
    seconds: float,
    sample_rate_hz: int,
    channels: int = 1,
    freq_hz: float = 440.0,
    subtype: str = "PCM_16",
) -> Path:
    t = np.arange(round(seconds * sample_rate_hz)) / sample_rate_hz
    mono = 0.3 * np.sin(2 * np.pi * freq_hz * t)
    data = np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono
    sf.write(str(path), data, sample_rate_hz, subtype=subtype)
    return path
