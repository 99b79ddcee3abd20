"""YAMNet's log-mel frontend in torch, as the TFLite graph computes it.

Frames of 400 samples (25 ms) every 160 (10 ms), no centring or padding, a periodic Hann
window, a 512-point rFFT, the magnitude, a 257 x 64 mel matrix (125-7500 Hz, HTK mel scale,
no normalisation) and ``log(mel + 0.001)``. The window and the mel matrix are persistent
buffers: the converted weights carry the TFLite graph's own tensors
(``stft/hann_window/sub_2``, ``mel_spectrogram``), so loading them makes the frontend match
the interpreter's. The defaults computed here agree with those tensors to about 1e-6.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SAMPLE_RATE_HZ = 16_000
FRAME_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
FFT_SAMPLES = 512
N_FFT_BINS = FFT_SAMPLES // 2 + 1
N_MELS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.001


def n_frames(n_samples: int) -> int:
    """Frames the frontend makes from ``n_samples`` samples: 1 + (N - 400) // 160."""
    if n_samples < FRAME_SAMPLES:
        raise ValueError(f"need at least {FRAME_SAMPLES} samples, got {n_samples}")
    return 1 + (n_samples - FRAME_SAMPLES) // HOP_SAMPLES


def _hz_to_mel(freq_hz: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(freq_hz / 700.0)


def tf_mel_matrix() -> torch.Tensor:
    """``tf.signal.linear_to_mel_weight_matrix(64, 257, 16000, 125, 7500)``, shape (257, 64).

    Bin 0 (DC) gets no weight, as in TensorFlow.
    """
    nyquist_hz = SAMPLE_RATE_HZ / 2.0
    bins_hz = torch.linspace(0.0, nyquist_hz, N_FFT_BINS, dtype=torch.float64)[1:]
    bins_mel = _hz_to_mel(bins_hz).unsqueeze(1)
    edges_mel = torch.linspace(
        _hz_to_mel(torch.tensor(MEL_MIN_HZ, dtype=torch.float64)).item(),
        _hz_to_mel(torch.tensor(MEL_MAX_HZ, dtype=torch.float64)).item(),
        N_MELS + 2,
        dtype=torch.float64,
    )
    lower, center, upper = edges_mel[:-2], edges_mel[1:-1], edges_mel[2:]
    lower_slopes = (bins_mel - lower) / (center - lower)
    upper_slopes = (upper - bins_mel) / (upper - center)
    weights = torch.clamp(torch.minimum(lower_slopes, upper_slopes), min=0.0)
    return torch.cat([torch.zeros(1, N_MELS, dtype=torch.float64), weights]).to(torch.float32)


def periodic_hann_window() -> torch.Tensor:
    n = torch.arange(FRAME_SAMPLES, dtype=torch.float64)
    return (0.5 - 0.5 * torch.cos(2.0 * math.pi * n / FRAME_SAMPLES)).to(torch.float32)


class YamnetFrontend(nn.Module):
    """Waveform (B, N) float32, mono 16 kHz in [-1, 1] -> log-mel (B, T, 64), T = n_frames(N)."""

    # Persistent buffers (in the state dict); declared so type checkers see tensors.
    window: torch.Tensor
    mel_matrix: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", periodic_hann_window())
        self.register_buffer("mel_matrix", tf_mel_matrix())

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() != 2:
            raise ValueError(f"expected (batch, samples), got shape {tuple(waveform.shape)}")
        n_frames(waveform.shape[-1])  # validates the length
        frames = waveform.float().unfold(-1, FRAME_SAMPLES, HOP_SAMPLES) * self.window
        magnitude = torch.fft.rfft(frames, n=FFT_SAMPLES).abs()
        return torch.log(torch.matmul(magnitude, self.mel_matrix) + LOG_OFFSET)
