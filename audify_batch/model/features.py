"""Log-mel frontend written with torch ops only.

It reproduces ``torchaudio.transforms.MelSpectrogram`` followed by
``torchaudio.transforms.AmplitudeToDB(stype="power", top_db=...)`` for the
same parameters (HTK mel scale, no filterbank norm, Hann window, centred
reflect-padded frames), without importing torchaudio at run time.
The parity is checked against a stored torchaudio fixture in the tests.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FrontendConfig:
    """Parameters of the log-mel frontend; stored in the model card."""

    sample_rate_hz: int = 16_000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    f_min_hz: float = 20.0
    f_max_hz: float = 8_000.0
    top_db: float | None = 80.0

    def __post_init__(self) -> None:
        if self.sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive, got {self.sample_rate_hz}")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError("win_length must be in (0, n_fft]")
        if self.hop_length <= 0 or self.n_mels <= 0:
            raise ValueError("hop_length and n_mels must be positive")
        if not 0.0 <= self.f_min_hz < self.f_max_hz <= self.sample_rate_hz / 2:
            raise ValueError("need 0 <= f_min_hz < f_max_hz <= sample_rate_hz / 2")

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for ``n_samples`` input samples (centred framing)."""
        return n_samples // self.hop_length + 1

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _hz_to_mel_htk(freq_hz: float) -> float:
    return 2595.0 * math.log10(1.0 + freq_hz / 700.0)


def _mel_to_hz_htk(mels: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def mel_filterbank(config: FrontendConfig) -> torch.Tensor:
    """Triangular HTK mel filterbank, shape (n_fft // 2 + 1, n_mels).

    Same construction as ``torchaudio.functional.melscale_fbanks`` with
    ``norm=None, mel_scale="htk"``.
    """
    n_freqs = config.n_fft // 2 + 1
    all_freqs = torch.linspace(0, config.sample_rate_hz // 2, n_freqs, dtype=torch.float64)
    m_min = _hz_to_mel_htk(config.f_min_hz)
    m_max = _hz_to_mel_htk(config.f_max_hz)
    m_pts = torch.linspace(m_min, m_max, config.n_mels + 2, dtype=torch.float64)
    f_pts = _mel_to_hz_htk(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).to(torch.float32)


class LogMel(nn.Module):
    """Waveform batch (B, samples) -> log-mel power in dB, (B, n_mels, frames).

    ``top_db`` clamps each example separately to ``max - top_db``, as
    ``AmplitudeToDB`` does for an input of shape (B, 1, n_mels, frames).
    """

    # Registered buffers; declared so type checkers see tensors, not Tensor | Module.
    window: torch.Tensor
    fbank: torch.Tensor

    def __init__(self, config: FrontendConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)
        self.register_buffer("fbank", mel_filterbank(config), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(f"expected (batch, samples), got shape {tuple(waveform.shape)}")
        cfg = self.config
        spec = torch.stft(
            waveform.float(),
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power.transpose(-1, -2), self.fbank).transpose(-1, -2)
        mel_db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        if cfg.top_db is not None:
            floor = mel_db.amax(dim=(-2, -1), keepdim=True) - cfg.top_db
            mel_db = torch.maximum(mel_db, floor)
        return mel_db
