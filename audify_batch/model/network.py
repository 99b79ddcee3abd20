"""ResNet-style CNN over log-mel spectrograms.

``AudioResNet`` maps normalised log-mels (B, n_mels, frames) to logits and
the pooled embedding. ``AudioClassifier`` composes the frontend, the
normalisation and the network so that a waveform batch goes in and the
whole batch is featurised on the model's device.

Every stage is a named child module (``stem``, ``stage1`` ...), so its
activation is reachable with a forward hook (see ``capture_activations``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from audify_batch.model.features import FrontendConfig, LogMel


def _global_mean(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


def _freq_mean_time_max_mean(x: torch.Tensor) -> torch.Tensor:
    """Average over mel bands, then max plus mean over time (PANNs' pooling).

    A short event (one bark in five seconds of quiet) keeps its weight through the max.
    """
    over_time = x.mean(dim=2)
    return over_time.amax(dim=2) + over_time.mean(dim=2)


POOLINGS = {"mean": _global_mean, "freq_mean_time_max_mean": _freq_mean_time_max_mean}


@dataclass(frozen=True)
class ArchConfig:
    """Width and depth of the network; stored in the model card."""

    n_classes: int = 50
    stem_channels: int = 32
    stage_channels: tuple[int, ...] = (32, 64, 128, 256)
    blocks_per_stage: tuple[int, ...] = (1, 1, 1, 1)
    dropout: float = 0.3
    pooling: str = "mean"  # one of POOLINGS

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise ValueError("n_classes must be at least 2")
        if not self.stage_channels or len(self.stage_channels) != len(self.blocks_per_stage):
            raise ValueError("stage_channels and blocks_per_stage need the same, non-zero length")
        if min(self.stage_channels) <= 0 or min(self.blocks_per_stage) <= 0:
            raise ValueError("channels and block counts must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {sorted(POOLINGS)}, not {self.pooling!r}")

    @property
    def embedding_dim(self) -> int:
        return self.stage_channels[-1]

    @property
    def stage_names(self) -> tuple[str, ...]:
        return ("stem", *tuple(f"stage{i + 1}" for i in range(len(self.stage_channels))))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ArchConfig:
        values = dict(data)
        values["stage_channels"] = tuple(values["stage_channels"])  # type: ignore[arg-type]
        values["blocks_per_stage"] = tuple(values["blocks_per_stage"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ModelOutput:
    logits: torch.Tensor
    embedding: torch.Tensor
    # Scores of the second vocabulary (AudioSet, already sigmoid), where the network has that head.
    audioset_scores: torch.Tensor | None = None
    # An ensemble's first branch's own logits: what Grad-CAM follows back to that branch's layers
    # (the averaged logits are log-probabilities, whose gradient vanishes on confident clips).
    branch_logits: torch.Tensor | None = None


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a (projected) shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def _stage(in_channels: int, out_channels: int, n_blocks: int, stride: int) -> nn.Sequential:
    blocks = [ResidualBlock(in_channels, out_channels, stride)]
    blocks += [ResidualBlock(out_channels, out_channels, 1) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


class CNN(nn.Module):
    """What every family's CNN offers besides ``forward`` (log-mel -> ``ModelOutput``): its
    layers by name, for activations and Grad-CAM, and their outputs as whole-window maps."""

    @property
    def stage_names(self) -> tuple[str, ...]:
        """Submodule names of the layers to draw, input to output."""
        raise NotImplementedError

    def segment_map(self, activation: torch.Tensor, batch: int) -> torch.Tensor:
        """A stage's output as (batch, C, freq, time) maps of whole windows."""
        return activation


class AudioResNet(CNN):
    """Stem, residual stages, dropout, adaptive average pooling, linear head."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        self.stem = nn.Sequential(
            nn.Conv2d(1, arch.stem_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(arch.stem_channels),
            nn.ReLU(inplace=True),
        )
        in_channels = arch.stem_channels
        for index, (channels, n_blocks) in enumerate(
            zip(arch.stage_channels, arch.blocks_per_stage, strict=True)
        ):
            stride = 1 if index == 0 else 2
            self.add_module(f"stage{index + 1}", _stage(in_channels, channels, n_blocks, stride))
            in_channels = channels
        self.pool = POOLINGS[arch.pooling]
        self.dropout = nn.Dropout(arch.dropout)
        self.head = nn.Linear(arch.embedding_dim, arch.n_classes)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return self.arch.stage_names

    def forward(self, log_mel: torch.Tensor) -> ModelOutput:
        x = log_mel.unsqueeze(1)
        for name in self.arch.stage_names:
            x = getattr(self, name)(x)
        embedding = self.pool(x)
        return ModelOutput(logits=self.head(self.dropout(embedding)), embedding=embedding)


class Network(nn.Module):
    """What every model family's network is: waveforms at the model rate -> ``ModelOutput``,
    in two steps, ``features`` (the frontend, always float32) then ``net`` (the CNN)."""

    net: CNN
    # Whether the CNN runs faster with channels-last tensors (oneDNN, cuDNN): the resnet does;
    # YAMNet's depthwise convolutions run at half speed that way in bf16 on the CPU.
    channels_last: bool = True

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, waveform: torch.Tensor) -> ModelOutput:
        output: ModelOutput = self.net(self.features(waveform))
        return output

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores in [0, 1] of the card's labels from the logits (softmax unless a family says)."""
        return torch.softmax(logits, dim=1)


class AudioClassifier(Network):
    """Waveforms at the model rate -> logits and embeddings, frontend included."""

    # Registered buffers; declared so type checkers see tensors, not Tensor | Module.
    norm_mean_db: torch.Tensor
    norm_std_db: torch.Tensor

    def __init__(
        self,
        frontend: FrontendConfig,
        arch: ArchConfig,
        norm_mean_db: torch.Tensor,
        norm_std_db: torch.Tensor,
    ) -> None:
        super().__init__()
        if norm_mean_db.shape != (frontend.n_mels,) or norm_std_db.shape != (frontend.n_mels,):
            raise ValueError("normalisation statistics need one value per mel band")
        self.frontend = LogMel(frontend)
        self.register_buffer("norm_mean_db", norm_mean_db.reshape(-1, 1).float())
        self.register_buffer("norm_std_db", norm_std_db.reshape(-1, 1).float())
        self.net: AudioResNet = AudioResNet(arch)

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Normalised log-mels as the network sees them, (B, n_mels, frames)."""
        return (self.frontend(waveform) - self.norm_mean_db) / self.norm_std_db


@contextmanager
def capture_activations(
    net: CNN, stage_names: tuple[str, ...] | None = None, detach: bool = True
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of each named stage during forward passes in the block.

    ``detach=False`` keeps the outputs in the autograd graph (for gradients, e.g. Grad-CAM).
    """
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for name in stage_names or net.stage_names:

        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor, key: str = name) -> None:
            captured[key] = output.detach() if detach else output

        handles.append(net.get_submodule(name).register_forward_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
