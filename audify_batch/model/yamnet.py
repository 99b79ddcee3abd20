"""YAMNet (AudioSet-pretrained MobileNet-v1 sound classifier) ported to PyTorch.

The weights come from the int8 TFLite classifier in ``../shared/models/yamnet`` (Google,
Apache-2.0), dequantised by ``training/convert_yamnet.py`` and shipped in
``weights/yamnet/yamnet.safetensors`` (float16 on disk, loaded as float32).

- ``YamnetFrontend`` (in ``yamnet_frontend``): waveform (B, N) -> log-mel (B, T, 64).
- ``YamnetBackbone``: log-mel (B, 1, T, 64) -> feature map (B, 1024, T', F'); ``embed`` pools
  it to (B, 1024). Fully convolutional: a 96-frame patch gives a 3 x 2 map, a 5 s segment
  (498 frames) a 16 x 2 map. Padding is TensorFlow's 'SAME' (asymmetric for stride 2).
- ``AudiosetHead``: embedding (B, 1024) -> 521 sigmoid scores.
- ``Yamnet``: the three together; ``coverage`` says how a segment is covered: ``patches``
  (0.96 s patches every 0.48 s, as YAMNet was trained; per-patch embeddings and scores are
  averaged) or ``full`` (one pass over the whole segment, the feature map pooled).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from audify_batch.model.yamnet_frontend import HOP_SAMPLES, N_MELS, SAMPLE_RATE_HZ, YamnetFrontend

PATCH_S = 0.96
PATCH_HOP_S = 0.48
PATCH_FRAMES = round(PATCH_S * SAMPLE_RATE_HZ / HOP_SAMPLES)  # 96
PATCH_HOP_FRAMES = round(PATCH_HOP_S * SAMPLE_RATE_HZ / HOP_SAMPLES)  # 48
TFLITE_INPUT_SAMPLES = 15_600  # 0.975 s: exactly 96 frames
EMBEDDING_DIM = 1024
N_AUDIOSET_CLASSES = 521
STEM_CHANNELS = 32
# (output channels, stride) of the 13 depthwise-separable blocks.
_WIDTHS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
BLOCKS: tuple[tuple[int, int], ...] = tuple(zip(_WIDTHS, _STRIDES, strict=True))

DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights" / "yamnet"
WEIGHTS_FILE = "yamnet.safetensors"
LABELS_FILE = "labels_audioset.txt"


class YamnetWeightsError(RuntimeError):
    """The YAMNet weights file is missing or does not fit the network."""


class Coverage(StrEnum):
    PATCHES = "patches"
    FULL = "full"


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) of one axis; the extra one goes after."""
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Square conv with TensorFlow 'SAME' padding; stride 1 uses the (equal) built-in padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1):
        padding = kernel // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=True)
        self.tf_kernel = kernel
        self.tf_stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tf_stride != 1:
            top, bottom = same_padding(x.shape[-2], self.tf_kernel, self.tf_stride)
            left, right = same_padding(x.shape[-1], self.tf_kernel, self.tf_stride)
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv (stride 1 or 2) + ReLU6, 1x1 pointwise conv + ReLU6; BN folded in."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = SameConv2d(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self.pointwise(F.relu6(self.depthwise(x), inplace=True)), inplace=True)


class YamnetBackbone(nn.Module):
    """MobileNet-v1: 3x3 conv (stride 2, 32 channels), 13 depthwise-separable blocks, ReLU6."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = SameConv2d(1, STEM_CHANNELS, 3, 2)
        blocks = []
        in_channels = STEM_CHANNELS
        for out_channels, stride in BLOCKS:
            blocks.append(DepthwiseSeparable(in_channels, out_channels, stride))
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        # Channels-last kernels and activations: depthwise convs run about 1.5-2x faster on CPU.
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel (B, 1, T, 64) -> feature map (B, 1024, ceil(T / 32), 2), channels-last."""
        if log_mel.dim() != 4 or log_mel.shape[1] != 1 or log_mel.shape[-1] != N_MELS:
            raise ValueError(f"expected log-mel (batch, 1, frames, {N_MELS}), got {tuple(log_mel.shape)}")
        x = log_mel.contiguous(memory_format=torch.channels_last)
        return self.blocks(F.relu6(self.stem(x), inplace=True))

    def embed(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel (B, 1, T, 64) -> embedding (B, 1024), the feature map's global mean."""
        return self(log_mel).mean(dim=(2, 3))


class AudiosetHead(nn.Module):
    """Embedding (B, 1024) -> 521 AudioSet sigmoid scores."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(EMBEDDING_DIM, N_AUDIOSET_CLASSES)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(embedding))


def patch_frames(
    log_mel: torch.Tensor, patch_frames: int = PATCH_FRAMES, hop_frames: int = PATCH_HOP_FRAMES
) -> torch.Tensor:
    """Log-mel (B, T, 64) -> patches (B, P, patch_frames, 64), P = 1 + (T - patch_frames) // hop.

    Trailing frames that do not fill a patch are dropped (as YAMNet does).
    """
    if log_mel.dim() != 3:
        raise ValueError(f"expected log-mel (batch, frames, mels), got shape {tuple(log_mel.shape)}")
    if patch_frames <= 0 or hop_frames <= 0:
        raise ValueError("patch_frames and hop_frames must be positive")
    if log_mel.shape[1] < patch_frames:
        raise ValueError(f"need at least {patch_frames} frames for one patch, got {log_mel.shape[1]}")
    return log_mel.unfold(1, patch_frames, hop_frames).transpose(-1, -2)


@dataclass(frozen=True)
class YamnetOutput:
    scores: torch.Tensor  # (B, 521) sigmoid AudioSet scores
    embedding: torch.Tensor  # (B, 1024)


class Yamnet(nn.Module):
    """Waveform (B, N) at 16 kHz -> AudioSet scores and 1024-d embeddings.

    State-dict keys: ``frontend.{window,mel_matrix}``, ``backbone.stem.{weight,bias}``,
    ``backbone.blocks.{0..12}.{depthwise,pointwise}.{weight,bias}``, ``head.fc.{weight,bias}``.
    """

    def __init__(self, coverage: Coverage | str = Coverage.PATCHES) -> None:
        super().__init__()
        self.coverage = Coverage(coverage)
        self.frontend = YamnetFrontend()
        self.backbone = YamnetBackbone()
        self.head = AudiosetHead()

    def patch_embeddings(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveform (B, N >= 15600) -> per-patch embeddings (B, P, 1024)."""
        patches = patch_frames(self.frontend(waveform))
        batch, n_patches = patches.shape[:2]
        flat = patches.reshape(batch * n_patches, 1, PATCH_FRAMES, N_MELS)
        return self.backbone.embed(flat).reshape(batch, n_patches, EMBEDDING_DIM)

    def forward(self, waveform: torch.Tensor) -> YamnetOutput:
        if self.coverage is Coverage.FULL:
            embedding = self.backbone.embed(self.frontend(waveform).unsqueeze(1))
            return YamnetOutput(scores=self.head(embedding), embedding=embedding)
        per_patch = self.patch_embeddings(waveform)
        return YamnetOutput(scores=self.head(per_patch).mean(dim=1), embedding=per_patch.mean(dim=1))


def load_yamnet(weights: Path = DEFAULT_WEIGHTS_DIR, coverage: Coverage | str = Coverage.PATCHES) -> Yamnet:
    """The ported YAMNet in eval mode, weights from a folder (``yamnet.safetensors``) or a file.

    Any floating dtype on disk (the shipped file is float16) is loaded as float32.
    """
    path = weights / WEIGHTS_FILE if weights.is_dir() else weights
    if not path.is_file():
        raise YamnetWeightsError(f"no YAMNet weights at {path}")
    try:
        state = {name: tensor.float() for name, tensor in load_file(str(path)).items()}
    except Exception as error:  # safetensors raises its own error types
        raise YamnetWeightsError(f"cannot read YAMNet weights {path}: {error}") from error
    model = Yamnet(coverage)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    if found != expected:
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        raise YamnetWeightsError(
            f"{path} does not fit Yamnet: missing {missing}, unexpected {unexpected}, wrong shape {wrong}"
        )
    model.load_state_dict(state)
    return model.eval()


def load_audioset_labels(weights_dir: Path = DEFAULT_WEIGHTS_DIR) -> tuple[str, ...]:
    """The 521 AudioSet display names in score order."""
    labels = tuple((weights_dir / LABELS_FILE).read_text(encoding="utf-8").splitlines())
    if len(labels) != N_AUDIOSET_CLASSES:
        raise YamnetWeightsError(f"expected {N_AUDIOSET_CLASSES} labels, got {len(labels)}")
    return labels
