"""Batch augmentations on log-mel spectrograms (B, n_mels, frames)."""

from __future__ import annotations

import math

import torch


def random_gain_db(x_db: torch.Tensor, max_gain_db: float, gen: torch.Generator) -> torch.Tensor:
    """Add a random gain in [-max, +max] dB per example (a level change)."""
    gain = (torch.rand(x_db.shape[0], 1, 1, generator=gen) * 2 - 1) * max_gain_db
    return x_db + gain


def random_time_shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Circularly shift each example by a random number of frames."""
    n_frames = x.shape[-1]
    shifts = torch.randint(0, n_frames, (x.shape[0],), generator=gen)
    index = (torch.arange(n_frames).unsqueeze(0) - shifts.unsqueeze(1)) % n_frames
    return torch.gather(x, -1, index.unsqueeze(1).expand(-1, x.shape[1], -1))


def _mask(x: torch.Tensor, axis: int, n_masks: int, max_width: int, gen: torch.Generator) -> torch.Tensor:
    size = x.shape[axis]
    positions = torch.arange(size).view(1, 1, -1)
    width = torch.randint(0, max_width + 1, (x.shape[0], n_masks, 1), generator=gen)
    start = (torch.rand(x.shape[0], n_masks, 1, generator=gen) * (size - width + 1)).long()
    masked = ((positions >= start) & (positions < start + width)).any(dim=1)  # (B, size)
    shape = (x.shape[0], size, 1) if axis == 1 else (x.shape[0], 1, size)
    return x.masked_fill(masked.view(shape), 0.0)


def spec_augment(
    x: torch.Tensor,
    gen: torch.Generator,
    freq_masks: int = 2,
    freq_width: int = 8,
    time_masks: int = 2,
    time_width: int = 25,
) -> torch.Tensor:
    """SpecAugment frequency and time masking (masked bins set to 0, the mean)."""
    x = _mask(x, 1, freq_masks, freq_width, gen)
    return _mask(x, 2, time_masks, time_width, gen)


def mixup(
    x: torch.Tensor, y_soft: torch.Tensor, alpha: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each example with a random partner; the targets mix alike."""
    if alpha <= 0:
        return x, y_soft
    # Beta(alpha, alpha) from two Gamma draws, so that ``gen`` alone seeds it.
    concentration = torch.full((2,), alpha)
    gammas = torch._standard_gamma(concentration, generator=gen)
    lam = float(gammas[0] / gammas.sum())
    perm = torch.randperm(x.shape[0], generator=gen)
    return lam * x + (1 - lam) * x[perm], lam * y_soft + (1 - lam) * y_soft[perm]


def smooth_one_hot(targets: torch.Tensor, n_classes: int, smoothing: float) -> torch.Tensor:
    y = torch.full((targets.shape[0], n_classes), smoothing / n_classes)
    y.scatter_(1, targets.unsqueeze(1), 1.0 - smoothing + smoothing / n_classes)
    return y


def random_stretch_crop(
    x: torch.Tensor, crop_frames: int, max_stretch: float, gen: torch.Generator
) -> torch.Tensor:
    """Stretch each example in time by a factor in [1/(1+m), 1+m], then take a circular crop.

    Linear interpolation along frames: a cheap stand-in for a tempo change that keeps the
    spectrum (pitch) as it is.
    """
    n_frames = x.shape[-1]
    log_factors = (torch.rand(x.shape[0], generator=gen) * 2 - 1) * math.log1p(max_stretch)
    starts = torch.rand(x.shape[0], generator=gen)
    crops = []
    for example, log_factor, start in zip(x, log_factors, starts, strict=True):
        length = max(2, round(n_frames * float(log_factor.exp())))
        stretched = torch.nn.functional.interpolate(
            example.unsqueeze(0), size=length, mode="linear", align_corners=False
        )[0]
        index = (int(start * length) + torch.arange(crop_frames)) % length
        crops.append(stretched[:, index])
    return torch.stack(crops)


def random_freq_shift(x: torch.Tensor, max_bins: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each example up or down by up to ``max_bins`` mel bands; vacated bands become 0."""
    n_bands = x.shape[1]
    shifts = torch.randint(-max_bins, max_bins + 1, (x.shape[0], 1), generator=gen)
    source = torch.arange(n_bands).unsqueeze(0) - shifts  # (B, bands)
    valid = (source >= 0) & (source < n_bands)
    index = source.clamp(0, n_bands - 1).unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return torch.gather(x, 1, index) * valid.unsqueeze(-1)
