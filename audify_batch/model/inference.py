"""Run the classifier over segments: batching, precision, top-K.

``TorchModel`` is the model step of a labeling run: waveforms in, top-K and
embeddings out (``TopK``, numpy on the CPU). ``classify_file`` streams one
file (any length, rate, channel count) through decode -> resample ->
segments -> model, holding at most one batch of segments in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch

from audify_batch.ingest.audio_io import probe, stream_mono
from audify_batch.ingest.segments import Segment, SegmentingConfig, segment_audio, with_end
from audify_batch.model.checkpoint import ModelCard, load_checkpoint
from audify_batch.model.cpu_memory import keep_freed_memory
from audify_batch.model.network import Network
from audify_batch.model.outputs import TopK


class Precision(StrEnum):
    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"


@dataclass(frozen=True)
class SegmentPrediction:
    index: int
    start_s: float
    end_s: float
    labels: tuple[str, ...]
    confidences: tuple[float, ...]
    embedding: np.ndarray
    detected: tuple[str, ...] | None = None  # None: the model has no thresholds
    audioset_labels: tuple[str, ...] = ()
    audioset_scores: tuple[float, ...] = ()


def cpu_supports_bf16() -> bool:
    """True where oneDNN runs bf16 convolutions natively (AVX512-BF16, AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: Precision, device: torch.device) -> Precision:
    if precision is not Precision.AUTO:
        return precision
    if device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16()):
        return Precision.BF16
    return Precision.FP32


def prepare_for_inference(model: Network, device: torch.device) -> Network:
    """Eval mode on ``device``; channels-last convolutions (faster with oneDNN and cuDNN). A batch
    loop on CPU also wants ``keep_batch_memory``; a long-lived server does not."""
    model = model.eval().to(device)
    if model.channels_last:
        # The torch stubs omit the documented to(memory_format=...) overload.
        model.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def keep_batch_memory(device: torch.device) -> bool:
    """On CPU, keep freed activations for the next batch (``cpu_memory``): about 2x faster for
    the default model, at the price of the process staying near its peak memory. True where
    glibc took the setting."""
    return device.type == "cpu" and keep_freed_memory()


@dataclass(frozen=True)
class BatchScores:
    """One batch through a network, float32: class scores (B, n_classes), embeddings (B, D) and,
    where the network has that head, AudioSet scores (B, 521)."""

    probs: torch.Tensor
    embeddings: torch.Tensor
    audioset: torch.Tensor | None = None


@torch.inference_mode()
def score_batch(model: Network, waveforms: torch.Tensor, precision: Precision) -> BatchScores:
    """Every score of a (B, window) batch. The frontend always runs in float32; bf16 autocast
    covers the CNN only."""
    device = next(model.parameters()).device
    features = model.features(waveforms.to(device, non_blocking=True))
    enabled = precision is Precision.BF16
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
        output = model.net(features)
    audioset = None if output.audioset_scores is None else output.audioset_scores.float()
    return BatchScores(model.class_scores(output.logits.float()), output.embedding.float(), audioset)


def predict_batch(
    model: Network, waveforms: torch.Tensor, precision: Precision
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (B, n_classes) and embeddings (B, D), float32."""
    scores = score_batch(model, waveforms, precision)
    return scores.probs, scores.embeddings


def detect(scores: BatchScores, card: ModelCard) -> torch.Tensor:
    """(B, n_classes) booleans: each class whose score reaches its threshold, none where the
    AudioSet head's top label says nothing known is there (the card's ``abstain_audioset``) or
    where the card's known-sound gate says so."""
    thresholds = torch.tensor(card.thresholds, device=scores.probs.device)
    detected = scores.probs >= thresholds
    if card.abstain_audioset and scores.audioset is not None:
        veto = [card.audioset_labels.index(name) for name in card.abstain_audioset]
        best = scores.audioset.max(dim=1)
        abstain = torch.isin(best.indices, torch.tensor(veto, device=best.indices.device))
        detected &= ~(abstain & (best.values >= card.abstain_min_score))[:, None]
    if card.known_gate is not None and scores.audioset is not None:
        detected &= card.known_gate.passes(scores.audioset)[:, None]
    return detected


def to_top_k(scores: BatchScores, card: ModelCard, top_k: int) -> TopK:
    """A batch's scores as the run stores them: top-K of both vocabularies, ``detected`` where the
    card has thresholds (a class is detected when its score reaches its threshold and the card's
    AudioSet rule, a known-sound gate or a veto, lets it: see ``detect``)."""
    values, indices = scores.probs.topk(min(top_k, scores.probs.shape[1]), dim=1)
    audioset_values = audioset_indices = detected = None
    if scores.audioset is not None:
        top = scores.audioset.topk(min(top_k, scores.audioset.shape[1]), dim=1)
        audioset_values, audioset_indices = top.values.cpu().numpy(), top.indices.cpu().numpy()
    if card.thresholds:
        detected = detect(scores, card).cpu().numpy()
    return TopK(
        values.cpu().numpy(),
        indices.cpu().numpy(),
        scores.embeddings.cpu().numpy(),
        audioset_values,
        audioset_indices,
        detected,
    )


@dataclass(frozen=True, eq=False)
class TorchModel:
    """The network on its device with a resolved precision; ``predict`` is one model step."""

    network: Network
    card: ModelCard
    precision: Precision  # resolved: fp32 or bf16, never auto

    def __post_init__(self) -> None:
        if self.precision is Precision.AUTO:
            raise ValueError("TorchModel needs a resolved precision (fp32 or bf16), not auto")

    @classmethod
    def load(cls, model_dir: Path, device: torch.device, precision: Precision) -> TorchModel:
        """Load a checkpoint, prepare it for inference on ``device`` and resolve ``precision``."""
        network, card = load_checkpoint(model_dir)
        return cls(prepare_for_inference(network, device), card, resolve_precision(precision, device))

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def predict(self, waveforms: torch.Tensor, top_k: int) -> TopK:
        """Top-``top_k`` classes (at most all of them) and embeddings of a (B, window) batch."""
        return to_top_k(score_batch(self.network, waveforms, self.precision), self.card, top_k)


def classify_file(
    model: Network,
    card: ModelCard,
    path: str | Path,
    k: int = 5,
    segmenting: SegmentingConfig | None = None,
    batch_size: int = 64,
    precision: Precision = Precision.AUTO,
) -> Iterator[SegmentPrediction]:
    """Top-K predictions for every segment of one file, in order."""
    info = probe(path)
    model_hz = card.frontend.sample_rate_hz
    grid = (segmenting or SegmentingConfig()).grid(card.segment_s, model_hz)
    segments = grid.plan(info.n_frames, info.sample_rate_hz)
    device = next(model.parameters()).device
    resolved = resolve_precision(precision, device)
    pieces = segment_audio(
        stream_mono(path, model_hz), segments, info.sample_rate_hz, model_hz, grid.window_samples
    )
    batch: list[tuple[Segment, np.ndarray]] = []
    for item in with_end(pieces):
        if item is not None:
            batch.append(item)
        if batch and (item is None or len(batch) == batch_size):
            yield from _predict(model, card, batch, k, resolved, info.sample_rate_hz)
            batch = []


def _predict(
    model: Network,
    card: ModelCard,
    batch: list[tuple[Segment, np.ndarray]],
    k: int,
    precision: Precision,
    source_hz: int,
) -> Iterator[SegmentPrediction]:
    waveforms = torch.from_numpy(np.stack([audio for _, audio in batch]))
    out = to_top_k(score_batch(model, waveforms, precision), card, k)
    for row, (segment, _) in enumerate(batch):
        yield SegmentPrediction(
            segment.index,
            segment.start_s(source_hz),
            segment.end_s(source_hz),
            _names(card.labels, out.indices[row]),
            _rounded(out.values[row]),
            out.embeddings[row],
            None if out.detected is None else _names(card.labels, np.flatnonzero(out.detected[row])),
            () if out.audioset_indices is None else _names(card.audioset_labels, out.audioset_indices[row]),
            () if out.audioset_values is None else _rounded(out.audioset_values[row]),
        )


def _names(labels: tuple[str, ...], indices: np.ndarray) -> tuple[str, ...]:
    return tuple(labels[i] for i in indices.tolist())


def _rounded(values: np.ndarray) -> tuple[float, ...]:
    return tuple(round(v, 6) for v in values.tolist())
