from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audify_batch.model.features import FrontendConfig, LogMel
from tests.fixtures.waveforms import CASES, fixture_waveforms

FIXTURE = Path(__file__).parent / "fixtures" / "torchaudio_logmel.npz"


@pytest.mark.parametrize("case", sorted(CASES))
def test_log_mel_equals_torchaudio_reference(case: str) -> None:
    """MelSpectrogram + AmplitudeToDB from torchaudio (float64) vs ours (float32)."""
    reference = np.load(FIXTURE)[case]
    params = CASES[case]
    ours = LogMel(FrontendConfig(**params))(torch.from_numpy(fixture_waveforms(params["sample_rate_hz"])))
    assert ours.shape == reference.shape
    loud = reference > reference.max(axis=(1, 2), keepdims=True) - 60.0
    np.testing.assert_allclose(ours.numpy()[loud], reference[loud], atol=2e-3)
    # Near the 1e-10 power floor float32 rounding shows, still far below 0.1 dB.
    np.testing.assert_allclose(ours.numpy(), reference, atol=0.05)


def test_frame_count_matches_config() -> None:
    config = FrontendConfig()
    out = LogMel(config)(torch.zeros(2, 80_000))
    assert out.shape == (2, config.n_mels, config.n_frames(80_000))


def test_top_db_is_per_example() -> None:
    config = FrontendConfig()
    loud = torch.randn(1, 16_000)
    quiet = torch.zeros(1, 16_000)
    together = LogMel(config)(torch.cat([loud, quiet]))
    alone = LogMel(config)(quiet)
    torch.testing.assert_close(together[1:], alone)


@pytest.mark.parametrize(
    "kwargs",
    [dict(sample_rate_hz=0), dict(win_length=2048), dict(f_max_hz=9_000.0), dict(hop_length=0)],
)
def test_invalid_config_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FrontendConfig(**kwargs)
