"""Fine-tuning the YAMNet-based model's ESC-50 branch on cached trunk outputs.

The cache holds, per augmented view of every clip, the frozen backbone's feature map before
its last ``cache_blocks`` blocks (training/yamnet_features.py). Training runs the frozen
blocks between the cache and the tuned ones once (``advance``), then only the tuned block
copies and the head, with mixup and masking of the cached maps; every step picks one view
per clip at random. ``esc_forward`` computes the embedding exactly as ``YamnetNet.heads``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from audify_batch.model.families import YamnetArch
from audify_batch.model.yamnet import EMBEDDING_DIM
from audify_batch.model.yamnet_classifier import N_BLOCKS, YamnetNet


@dataclass(frozen=True)
class YamnetRecipe:
    """Everything that decides a fine-tuning run (stored in the model card)."""

    tuned_blocks: int = 2
    coverage: str = "full"
    esc_activation: str = "softmax"
    hidden_dim: int = 0
    dropout: float = 0.3
    epochs: int = 30
    batch_size: int = 64
    head_lr: float = 1e-3
    block_lr: float = 3e-4
    weight_decay: float = 0.05
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.4
    time_masks: int = 2
    time_mask_frames: int = 4  # frames of the cached map (1 frame = 160 ms at tuned_blocks 2)
    time_roll: bool = True  # circular shift of the cached map in time (like the views' roll)
    n_views: int = 3  # cached views used: 0 (the clip as it is) .. n_views - 1
    bf16: bool = True  # bf16 autocast in training (evaluation and inference: either)
    seed: int = 20261202

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.n_views < 1:
            raise ValueError("need epochs >= 1, batch_size >= 2, n_views >= 1")
        if self.head_lr <= 0 or self.block_lr < 0 or self.weight_decay < 0:
            raise ValueError("learning rates must be positive, weight decay non-negative")
        if self.mixup_alpha < 0 or not 0 <= self.label_smoothing < 1:
            raise ValueError("mixup_alpha must be >= 0 and label_smoothing in [0, 1)")
        self.arch()  # validates tuned_blocks, coverage, activation, dropout

    def arch(self) -> YamnetArch:
        return YamnetArch(
            hidden_dim=self.hidden_dim,
            dropout=self.dropout,
            coverage=self.coverage,
            esc_activation=self.esc_activation,
            tuned_blocks=self.tuned_blocks,
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _blocks_between(net: YamnetNet, cache_blocks: int) -> range:
    """Frozen backbone blocks from the cache's cut to the first tuned block."""
    if not net.arch.tuned_blocks <= cache_blocks <= N_BLOCKS:
        raise ValueError(
            f"a cache cut before the last {cache_blocks} blocks cannot feed {net.arch.tuned_blocks}"
        )
    return range(N_BLOCKS - cache_blocks, N_BLOCKS - net.arch.tuned_blocks)


@torch.inference_mode()
def advance(net: YamnetNet, maps: torch.Tensor, cache_blocks: int, batch_size: int = 128) -> torch.Tensor:
    """Cached maps (N, [P,] C, T, F) float16 -> the tuned blocks' input, float16."""
    blocks = _blocks_between(net, cache_blocks)
    if not len(blocks):
        return maps
    out = []
    for start in range(0, len(maps), batch_size):
        chunk = maps[start : start + batch_size]
        x = chunk.float().reshape(-1, *chunk.shape[-3:])
        for index in blocks:
            x = net.backbone.blocks[index](x)
        out.append(x.reshape(*chunk.shape[:-3], *x.shape[1:]).half())
    return torch.cat(out)


def esc_forward(net: YamnetNet, maps: torch.Tensor) -> torch.Tensor:
    """The tuned blocks' input (B, [P,] C, T, F) -> ESC-50 logits, as ``YamnetNet.heads``."""
    batch = len(maps)
    x = maps.reshape(-1, *maps.shape[-3:])
    esc_map = net.tuned(x) if net.arch.tuned_blocks else x
    embedding = esc_map.mean(dim=(2, 3)).reshape(batch, -1, EMBEDDING_DIM).mean(dim=1)
    return net.head(net.dropout(embedding))


def _time_mask(x: torch.Tensor, n_masks: int, max_frames: int, gen: torch.Generator) -> torch.Tensor:
    """Zero up to ``n_masks`` random runs of at most ``max_frames`` time steps per example."""
    if n_masks == 0 or max_frames == 0:
        return x
    frames = x.shape[-2]
    positions = torch.arange(frames).view(1, 1, -1)
    width = torch.randint(0, max_frames + 1, (x.shape[0], n_masks, 1), generator=gen)
    start = (torch.rand(x.shape[0], n_masks, 1, generator=gen) * (frames - width + 1)).long()
    masked = ((positions >= start) & (positions < start + width)).any(dim=1)
    shape = (x.shape[0],) + (1,) * (x.dim() - 3) + (frames, 1)
    return x.masked_fill(masked.view(shape), 0.0)


def _loss(logits: torch.Tensor, soft_targets: torch.Tensor, recipe: YamnetRecipe) -> torch.Tensor:
    n_classes = logits.shape[1]
    targets = soft_targets * (1 - recipe.label_smoothing) + recipe.label_smoothing / n_classes
    if recipe.esc_activation == "sigmoid":
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / len(logits)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _optimizer(net: YamnetNet, recipe: YamnetRecipe) -> torch.optim.Optimizer:
    groups = [{"params": list(net.head.parameters()), "lr": recipe.head_lr}]
    if recipe.tuned_blocks:
        groups.append({"params": list(net.tuned.parameters()), "lr": recipe.block_lr})
    return torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)


def train_esc_branch(
    net: YamnetNet,
    views: torch.Tensor,
    targets: torch.Tensor,
    recipe: YamnetRecipe,
    n_classes: int,
    log: bool = False,
) -> YamnetNet:
    """Fine-tune ``net.tuned`` and ``net.head`` on ``views`` (V, N, [P,] C, T, F), float16 maps
    already at the tuned blocks' input; ``targets`` (N,). Everything else stays frozen."""
    if views.shape[1] != len(targets):
        raise ValueError(f"{views.shape[1]} clips in the views, {len(targets)} targets")
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    trained = [*net.head.parameters(), *net.tuned.parameters()]
    for parameter in trained:
        parameter.requires_grad_(True)
    optimizer = _optimizer(net, recipe)
    steps_per_epoch = math.ceil(len(targets) / recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=recipe.epochs * steps_per_epoch,
        pct_start=0.1,
    )
    one_hot_targets = F.one_hot(targets, n_classes).float()
    net.train()
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(targets), generator=gen)
        total = 0.0
        for start in range(0, len(order), recipe.batch_size):
            index = order[start : start + recipe.batch_size]
            if len(index) < 2:
                continue
            x, y = _mixed_batch(views, index, one_hot_targets, recipe, gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16):
                logits = esc_forward(net, x)
            loss = _loss(logits.float(), y, recipe)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(index)
        if log:
            print(f"  epoch {epoch + 1}/{recipe.epochs} loss {total / len(targets):.4f}", flush=True)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net.eval()


def _mixed_batch(
    views: torch.Tensor,
    index: torch.Tensor,
    one_hot_targets: torch.Tensor,
    recipe: YamnetRecipe,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch: a random view per clip, mixup (one weight per batch), time masks."""
    view = torch.randint(0, min(recipe.n_views, len(views)), (len(index),), generator=gen)
    x = views[view, index].float()
    y = one_hot_targets[index]
    if recipe.time_roll:
        x = _roll_time(x, gen)
    if recipe.mixup_alpha > 0:
        lam = _beta(recipe.mixup_alpha, gen)
        perm = torch.randperm(len(index), generator=gen)
        x = lam * x + (1 - lam) * x[perm]
        y = lam * y + (1 - lam) * y[perm]
    return _time_mask(x, recipe.time_masks, recipe.time_mask_frames, gen), y


def _roll_time(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each example's map circularly shifted by a random number of time steps (axis -2)."""
    frames = x.shape[-2]
    shifts = torch.randint(0, frames, (len(x),), generator=gen)
    index = (torch.arange(frames).unsqueeze(0) - shifts.unsqueeze(1)) % frames  # (B, T)
    index = index.view(len(x), *(1,) * (x.dim() - 3), frames, 1).expand_as(x)
    return torch.gather(x, -2, index)


def _beta(alpha: float, gen: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw from ``gen`` (two seeded Gamma draws via numpy)."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    return float(rng.beta(alpha, alpha))


@torch.inference_mode()
def predict_esc_logits(net: YamnetNet, maps: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """ESC-50 logits (N, classes) of tuned-block inputs (N, [P,] C, T, F), float32, eval mode."""
    net.eval()
    return torch.cat(
        [
            esc_forward(net, maps[start : start + batch_size].float())
            for start in range(0, len(maps), batch_size)
        ]
    )
