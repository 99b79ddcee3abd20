"""The training recipe: one model from log-mels and targets, with a fixed epoch budget.

No test data enters here: the caller passes the training folds only, and
the epoch budget is fixed in advance, so nothing is picked on test scores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

from audify_batch.model.network import ArchConfig, AudioResNet
from training.augment import (
    mixup,
    random_freq_shift,
    random_gain_db,
    random_stretch_crop,
    random_time_shift,
    smooth_one_hot,
    spec_augment,
)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 120
    batch_size: int = 32
    max_lr: float = 3e-3
    weight_decay: float = 5e-2
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.4
    max_gain_db: float = 6.0
    freq_masks: int = 2
    freq_mask_bins: int = 8
    time_masks: int = 2
    time_mask_frames: int = 25
    crop_frames: int = 176  # train on random 3.5 s crops (with wrap-around); predict on whole 5 s
    max_time_stretch: float = 0.2  # stretch factors in [1/(1+m), 1+m]; 0 = none
    freq_shift_bins: int = 4  # shift up or down by up to this many mel bands; 0 = none
    bf16_autocast: bool = True
    seed: int = 20261121

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0:
            raise ValueError("epochs and batch_size must be positive")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("label_smoothing must be in [0, 1)")
        if self.max_time_stretch < 0 or self.freq_shift_bins < 0:
            raise ValueError("max_time_stretch and freq_shift_bins must not be negative")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def norm_stats(log_mels_db: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-band mean and std (dB) over all clips and frames given."""
    mean = log_mels_db.mean(dim=(0, 2))
    std = log_mels_db.std(dim=(0, 2)).clamp(min=1e-3)
    return mean, std


def _augmented_batch(
    x_db: torch.Tensor,
    y: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    n_classes: int,
    cfg: TrainConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    x = random_gain_db(x_db, cfg.max_gain_db, gen)
    if cfg.max_time_stretch > 0:
        x = random_stretch_crop(x, cfg.crop_frames, cfg.max_time_stretch, gen)
    else:
        x = random_time_shift(x, gen)[..., : cfg.crop_frames]
    x = (x - mean.view(1, -1, 1)) / std.view(1, -1, 1)
    if cfg.freq_shift_bins > 0:
        x = random_freq_shift(x, cfg.freq_shift_bins, gen)
    x, y_soft = mixup(x, smooth_one_hot(y, n_classes, cfg.label_smoothing), cfg.mixup_alpha, gen)
    x = spec_augment(x, gen, cfg.freq_masks, cfg.freq_mask_bins, cfg.time_masks, cfg.time_mask_frames)
    return x, y_soft


def _autocast(enabled: bool) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def train_model(
    x_db: torch.Tensor,
    y: torch.Tensor,
    arch: ArchConfig,
    cfg: TrainConfig,
    log_dir: Path | None = None,
) -> tuple[AudioResNet, torch.Tensor, torch.Tensor]:
    """Train on (N, n_mels, frames) log-mels in dB; returns the net and norm stats."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    mean, std = norm_stats(x_db)
    # The torch stubs omit the documented to(memory_format=...) overload.
    net = AudioResNet(arch)
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    steps_per_epoch = math.ceil(len(x_db) / cfg.batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.max_lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.max_lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch
    )
    writer = SummaryWriter(str(log_dir)) if log_dir else None
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(len(x_db), generator=gen)
        total_loss = 0.0
        for step in range(steps_per_epoch):
            index = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            xb, yb = _augmented_batch(x_db[index], y[index], mean, std, arch.n_classes, cfg, gen)
            with _autocast(cfg.bf16_autocast):
                logits = net(xb).logits.float()
            loss = -(yb * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item()
        if (epoch + 1) % 10 == 0:
            print(f"  epoch {epoch + 1}/{cfg.epochs} loss {total_loss / steps_per_epoch:.3f}", flush=True)
        if writer:
            writer.add_scalar("train/loss", total_loss / steps_per_epoch, epoch)
            writer.add_scalar("train/lr", schedule.get_last_lr()[0], epoch)
    if writer:
        writer.close()
    return net.eval(), mean, std


@torch.inference_mode()
def predict_logits(
    net: AudioResNet, x_db: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, batch_size: int = 128
) -> torch.Tensor:
    """Logits (float32) of normalised log-mels, in eval mode, full precision."""
    net.eval()
    out = []
    for start in range(0, len(x_db), batch_size):
        xb = (x_db[start : start + batch_size] - mean.view(1, -1, 1)) / std.view(1, -1, 1)
        out.append(net(xb).logits.float())
    return torch.cat(out)
