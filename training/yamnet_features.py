"""Features for fine-tuning the YAMNet-based model: the shared trunk's output per clip, cached.

The backbone below the tuned blocks is frozen, so its output for a clip never changes during
training: it is computed once per clip and augmented view (gain, circular time shift, speed,
low noise on the waveform) and training runs only the tuned blocks and the head. View 0 is
the clip as it is (for evaluation and for threshold fitting).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from audify_batch.model.features import FrontendConfig
from audify_batch.model.yamnet_classifier import YamnetNet
from training.data import Clip, clip_waveform

SAMPLE_RATE_HZ = 16_000
SEGMENT_SAMPLES = 80_000  # 5 s
YAMNET_RATE = FrontendConfig(sample_rate_hz=SAMPLE_RATE_HZ)  # only its rate is read


@dataclass(frozen=True)
class ViewAugment:
    """Waveform augmentation of one cached view; every draw comes from a seeded generator."""

    max_gain_db: float = 6.0
    max_speed_change: float = 0.1  # resampled by 1 +- this (pitch and tempo together)
    max_noise_dbfs: float = -50.0  # white noise added at most this loud (RMS, dBFS)
    # Extra attenuation in [0, this] dB: lowers the 8-bit copies' quantisation noise floor
    # towards that of 16-bit recordings. 0 draws nothing (the 2.0.0 caches' random stream).
    max_attenuation_db: float = 0.0

    def __post_init__(self) -> None:
        limits = (self.max_gain_db, self.max_speed_change, self.max_attenuation_db)
        if min(limits) < 0 or self.max_speed_change >= 1:
            raise ValueError("gain, speed change and attenuation limits must be >= 0 (speed change < 1)")

    def apply(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = torch.from_numpy(waveform)
        speed = 1.0 + rng.uniform(-self.max_speed_change, self.max_speed_change)
        n = round(len(x) / speed)
        x = F.interpolate(x[None, None], size=n, mode="linear", align_corners=False)[0, 0]
        x = F.pad(x, (0, max(0, SEGMENT_SAMPLES - n)))[:SEGMENT_SAMPLES]
        x = torch.roll(x, int(rng.integers(0, SEGMENT_SAMPLES)))
        gain_db = rng.uniform(-self.max_gain_db, self.max_gain_db)
        if self.max_attenuation_db > 0:
            gain_db -= rng.uniform(0.0, self.max_attenuation_db)
        gain = 10 ** (gain_db / 20)
        noise_rms = 10 ** (rng.uniform(-80.0, self.max_noise_dbfs) / 20)
        noise = torch.from_numpy(rng.standard_normal(SEGMENT_SAMPLES).astype(np.float32)) * noise_rms
        return (x * gain + noise).clamp(-1.0, 1.0).numpy().astype(np.float32)


def view_waveforms(waveforms: np.ndarray, view: int, augment: ViewAugment, seed: int) -> np.ndarray:
    """The clips' waveforms (N, 80000) as view ``view`` sees them (0: unchanged)."""
    if view == 0:
        return waveforms
    rng = np.random.default_rng([seed, view])
    return np.stack([augment.apply(w, rng) for w in waveforms])


@torch.inference_mode()
def trunk_features(
    net: YamnetNet, frontend: torch.nn.Module, waveforms: np.ndarray, batch_size: int = 32
) -> torch.Tensor:
    """The trunk's output for each clip, float16 on the CPU: (N, C, T', F') (coverage full) or
    (N, P, C, T', F') (patches)."""
    net.eval()
    out = []
    for start in range(0, len(waveforms), batch_size):
        batch = torch.from_numpy(waveforms[start : start + batch_size])
        log_mel = frontend(batch).transpose(1, 2)
        shared = net.trunk(log_mel)
        out.append(shared.reshape(len(batch), -1, *shared.shape[1:]).squeeze(1).half())
    return torch.cat(out)


def load_waveforms(clips: tuple[Clip, ...]) -> np.ndarray:
    """Every clip at 16 kHz, padded or cut to 5 s, through the pipeline's decoder and resampler."""
    segment_s = SEGMENT_SAMPLES / SAMPLE_RATE_HZ
    return np.stack([clip_waveform(clip.path, YAMNET_RATE, segment_s) for clip in clips])
