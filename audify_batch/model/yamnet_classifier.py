"""The default model: YAMNet's AudioSet-pretrained backbone, an ESC-50 head, YAMNet's AudioSet head.

``YamnetClassifier`` is a ``Network`` like the 1.x resnet: ``features`` is YAMNet's log-mel
frontend (float32, mel-major (B, 64, frames) like the resnet's, so explain draws both alike),
``net`` the CNN with two heads:

- the ESC-50 head reads the embedding of an ESC-50 branch: the backbone with its last
  ``arch.tuned_blocks`` blocks replaced by fine-tuned copies (none: the backbone itself);
  with ``arch.esc_branches`` > 1, more such branches (``extra_tuned``, ``extra_heads``), trained
  apart, share the trunk and their class scores are averaged; the embedding is the first's;
- the AudioSet head is YAMNet's own dense layer on YAMNet's own (frozen) blocks, so its 521
  labels stay YAMNet's whatever the ESC-50 fine-tuning changed.

The shared trunk (stem and the blocks before the tuned ones) runs once for both heads.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import torch
from torch import nn

from audify_batch.model.families import YamnetArch
from audify_batch.model.network import CNN, ModelOutput, Network
from audify_batch.model.yamnet import (
    BLOCKS,
    EMBEDDING_DIM,
    N_AUDIOSET_CLASSES,
    PATCH_FRAMES,
    AudiosetHead,
    Coverage,
    Yamnet,
    YamnetBackbone,
    patch_frames,
)
from audify_batch.model.yamnet_frontend import HOP_SAMPLES, SAMPLE_RATE_HZ, YamnetFrontend

N_BLOCKS = len(BLOCKS)


def _esc_head(arch: YamnetArch) -> nn.Module:
    if arch.hidden_dim == 0:
        return nn.Linear(arch.embedding_dim, arch.n_classes)
    return nn.Sequential(
        nn.Linear(arch.embedding_dim, arch.hidden_dim), nn.ReLU(), nn.Linear(arch.hidden_dim, arch.n_classes)
    )


class YamnetNet(CNN):
    """Log-mel (B, 64, frames) -> ESC-50 logits, the ESC-50 branch's embedding, AudioSet scores."""

    def __init__(self, arch: YamnetArch) -> None:
        super().__init__()
        if arch.embedding_dim != EMBEDDING_DIM or arch.n_audioset_classes != N_AUDIOSET_CLASSES:
            raise ValueError(f"YAMNet has a {EMBEDDING_DIM}-d embedding and {N_AUDIOSET_CLASSES} classes")
        if not 0 <= arch.tuned_blocks <= N_BLOCKS:
            raise ValueError(f"tuned_blocks must be in 0..{N_BLOCKS}, got {arch.tuned_blocks}")
        self.arch = arch
        self.backbone = YamnetBackbone()
        self.audioset = AudiosetHead()
        self.tuned = self._tuned_copy()
        self.dropout = nn.Dropout(arch.dropout)
        self.head = _esc_head(arch)
        self.extra_tuned = nn.ModuleList(self._tuned_copy() for _ in range(arch.esc_branches - 1))
        self.extra_heads = nn.ModuleList(_esc_head(arch) for _ in range(arch.esc_branches - 1))

    def _tuned_copy(self) -> nn.Sequential:
        return nn.Sequential(*(copy.deepcopy(self.backbone.blocks[i]) for i in self._tuned_range))

    @property
    def _tuned_range(self) -> range:
        return range(N_BLOCKS - self.arch.tuned_blocks, N_BLOCKS)

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The (first) ESC-50 branch's layers, input to output (for activations and Grad-CAM)."""
        first_tuned = N_BLOCKS - self.arch.tuned_blocks
        shared = tuple(f"backbone.blocks.{i}" for i in range(first_tuned))
        return ("backbone.stem", *shared, *(f"tuned.{i}" for i in range(self.arch.tuned_blocks)))

    def load_yamnet(self, yamnet: Yamnet) -> None:
        """Start from the converted YAMNet: backbone, AudioSet head, and tuned copies of its blocks."""
        self.backbone.load_state_dict(yamnet.backbone.state_dict())
        self.audioset.load_state_dict(yamnet.head.state_dict())
        for tuned in (self.tuned, *self.extra_tuned):
            for index, block in zip(self._tuned_range, tuned, strict=True):
                block.load_state_dict(yamnet.backbone.blocks[index].state_dict())

    def trunk(self, log_mel: torch.Tensor, coverage: Coverage | None = None) -> torch.Tensor:
        """The layers before the tuned ones: log-mel (B, 64, frames) -> feature map (B', C, T', F'),
        one map per segment (coverage full) or per 0.96 s patch (B' = B x patches)."""
        x = log_mel.transpose(1, 2)
        if (coverage or Coverage(self.arch.coverage)) is Coverage.PATCHES:
            hop_frames = round(self.arch.patch_hop_s * SAMPLE_RATE_HZ / HOP_SAMPLES)
            patches = patch_frames(x, PATCH_FRAMES, hop_frames)
            x = patches.reshape(-1, *patches.shape[2:])
        x = torch.nn.functional.relu6(self.backbone.stem(x.unsqueeze(1)))
        for index in range(N_BLOCKS - self.arch.tuned_blocks):
            x = self.backbone.blocks[index](x)
        return x

    def _yamnet_tail(self, shared: torch.Tensor) -> torch.Tensor:
        for index in self._tuned_range:
            shared = self.backbone.blocks[index](shared)
        return shared

    def _audioset(self, yamnet_map: torch.Tensor, batch: int) -> torch.Tensor:
        """YAMNet's scores per 0.96 s patch map, averaged over a segment's patches (as YAMNet does)."""
        scores = self.audioset(yamnet_map.mean(dim=(2, 3)))
        return scores.reshape(batch, -1, N_AUDIOSET_CLASSES).mean(dim=1)

    def heads(self, shared: torch.Tensor, batch: int) -> ModelOutput:
        """The ESC-50 branch from the trunk's output (``batch`` segments), and the AudioSet branch
        where it shares that trunk (coverage patches)."""
        embedding, logits = self._branch(self.tuned, self.head, shared, batch)
        first = None
        if self.arch.esc_branches > 1:
            first, pairs = logits, zip(self.extra_tuned, self.extra_heads, strict=True)
            logits = self._averaged([logits, *(self._branch(t, h, shared, batch)[1] for t, h in pairs)])
        audioset = None
        if Coverage(self.arch.coverage) is Coverage.PATCHES:
            audioset = self._audioset(self._yamnet_tail(shared), batch)
        return ModelOutput(logits=logits, embedding=embedding, audioset_scores=audioset, branch_logits=first)

    def _branch(
        self, tuned: nn.Module, head: nn.Module, shared: torch.Tensor, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One ESC-50 branch: (embedding, logits)."""
        esc_map = tuned(shared) if self.arch.tuned_blocks else shared  # no tuned blocks: YAMNet's
        embedding = esc_map.mean(dim=(2, 3)).reshape(batch, -1, EMBEDDING_DIM).mean(dim=1)
        return embedding, head(self.dropout(embedding))

    def _averaged(self, logits: list[torch.Tensor]) -> torch.Tensor:
        """The branches' class scores averaged, as logits of the mean: log-probabilities (softmax)
        or log-odds (sigmoid), so that the activation gives the mean back."""
        stacked = torch.stack([x.float() for x in logits])
        if self.arch.esc_activation == "sigmoid":  # log mean p - log mean (1 - p), without clamping
            log_p = torch.nn.functional.logsigmoid(stacked)
            log_q = torch.nn.functional.logsigmoid(-stacked)
            return torch.logsumexp(log_p, dim=0) - torch.logsumexp(log_q, dim=0)
        return torch.logsumexp(stacked.log_softmax(dim=2), dim=0) - math.log(len(logits))

    def forward(self, log_mel: torch.Tensor) -> ModelOutput:
        """Coverage patches: one trunk for both heads. Coverage full: the ESC-50 branch sees the whole
        segment in one pass; the AudioSet head still reads 0.96 s patches (a whole-segment pass is
        off-distribution for it), through YAMNet's own layers: two passes."""
        batch = len(log_mel)
        output = self.heads(self.trunk(log_mel), batch)
        if output.audioset_scores is not None:
            return output
        yamnet_map = self._yamnet_tail(self.trunk(log_mel, Coverage.PATCHES))
        return replace(output, audioset_scores=self._audioset(yamnet_map, batch))

    def segment_map(self, activation: torch.Tensor, batch: int) -> torch.Tensor:
        """A layer's output as one map per segment, (batch, C, freq, time) like the resnet's:
        patches side by side in time (coverage patches), time and frequency axes swapped."""
        per_patch = activation.reshape(batch, -1, *activation.shape[1:])  # (B, P, C, t, f)
        b, p, c, t, f = per_patch.shape
        return per_patch.permute(0, 2, 4, 1, 3).reshape(b, c, f, p * t)


class YamnetClassifier(Network):
    """Waveforms at 16 kHz -> ``ModelOutput`` with AudioSet scores; see the module docstring."""

    channels_last = False

    def __init__(self, arch: YamnetArch) -> None:
        super().__init__()
        self.arch = arch
        self.frontend = YamnetFrontend()
        self.net: YamnetNet = YamnetNet(arch)

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """YAMNet's log-mel, mel-major: (B, 64, frames)."""
        return self.frontend(waveform).transpose(1, 2)

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        if self.arch.esc_activation == "sigmoid":
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)

    def load_yamnet(self, yamnet: Yamnet) -> None:
        self.frontend.load_state_dict(yamnet.frontend.state_dict())
        self.net.load_yamnet(yamnet)
