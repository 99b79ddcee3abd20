"""Explain one segment: what the model heard and where it looked.

Pure computation over one 5-second window: the log-mel spectrogram as the
network saw it (normalised), the top-K labels, the activation of every CNN
stage (through forward hooks, not a second forward pass) and a Grad-CAM map
of the top label over the spectrogram. Reading the window and drawing the
figures live elsewhere (``read_window`` here, ``explain_page`` for output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from fsspec.core import url_to_fs

from audify_batch.ingest.audio_io import AudioDecodeError, open_audio, resample, to_mono
from audify_batch.model.checkpoint import ModelCard
from audify_batch.model.network import Network, capture_activations


@dataclass(frozen=True)
class Window:
    """A segment's audio at the model rate, and where it lies in its recording."""

    uri: str
    start_s: float
    end_s: float
    duration_s: float  # of the whole recording
    waveform: np.ndarray  # float32 mono, one model window at the model rate (zero-padded at the end)
    sample_rate_hz: int

    @property
    def segment_s(self) -> float:
        return len(self.waveform) / self.sample_rate_hz


@dataclass(frozen=True)
class Explanation:
    window: Window
    labels: tuple[str, ...]
    confidences: tuple[float, ...]
    log_mel: np.ndarray  # (n_mels, frames), normalised, as the network saw it
    stages: dict[str, np.ndarray]  # stage name -> (channels, freq, time) activation
    gradcam: np.ndarray  # (n_mels, frames) in [0, 1], for labels[0]


def segment_start_s(at_s: float, hop_s: float) -> float:
    """Start of the segment (on the labeling grid) that contains second ``at_s``."""
    if at_s < 0:
        raise ValueError(f"--at must be >= 0, got {at_s}")
    return math.floor(at_s / hop_s) * hop_s


def read_window(uri: str, start_s: float, model_rate_hz: int, segment_s: float) -> Window:
    """``segment_s`` seconds of ``uri`` from ``start_s``: seeks, decodes only that part."""
    fs, path = url_to_fs(uri)
    with fs.open(path, "rb") as handle, open_audio(handle, uri) as audio:
        rate_hz, n_frames = int(audio.samplerate), int(audio.frames)
        duration_s = n_frames / rate_hz
        if start_s >= duration_s:
            raise AudioDecodeError(uri, f"--at is past the end of the recording ({duration_s:.2f} s)")
        first = round(start_s * rate_hz)
        try:
            audio.seek(first)
            block = audio.read(round(segment_s * rate_hz), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioDecodeError(uri, f"not readable as audio ({error})") from error
    mono = resample(to_mono(block), rate_hz, model_rate_hz)
    window = np.zeros(round(segment_s * model_rate_hz), np.float32)
    window[: min(len(mono), len(window))] = mono[: len(window)]
    end_s = min(start_s + segment_s, duration_s)
    return Window(uri, start_s, end_s, duration_s, window, model_rate_hz)


def gradcam(activation: torch.Tensor, gradient: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM: channels weighted by their mean gradient, ReLU, upsampled and scaled to [0, 1]."""
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[0, 0]
    peak = float(cam.max())
    return (cam / peak).numpy() if peak > 0 else cam.numpy()


def explain_window(model: Network, card: ModelCard, window: Window, k: int = 5) -> Explanation:
    """Top-K, stage activations and Grad-CAM of the top label for one window (fp32, CPU or GPU).

    Every family's stage outputs are drawn as (channels, freq, time) maps of the whole window
    (``net.segment_map``: YAMNet's 0.96 s patches side by side)."""
    model.eval()
    device = next(model.parameters()).device
    net = model.net
    last_stage = net.stage_names[-1]
    with torch.enable_grad(), capture_activations(net, detach=False) as captured:
        features = model.features(torch.from_numpy(window.waveform)[None].to(device))
        features.requires_grad_(True)  # gradients flow even when the weights are frozen
        output = net(features)
        top = torch.topk(model.class_scores(output.logits)[0], k)
        followed = output.logits if output.branch_logits is None else output.branch_logits
        (gradient,) = torch.autograd.grad(followed[0, int(top.indices[0])], captured[last_stage])
    maps = {name: net.segment_map(t.detach(), 1).cpu() for name, t in captured.items()}
    size = (features.shape[1], features.shape[2])
    return Explanation(
        window=window,
        labels=tuple(card.labels[int(i)] for i in top.indices),
        confidences=tuple(float(v) for v in top.values.detach()),
        log_mel=features[0].detach().cpu().numpy(),
        stages={name: t[0].numpy() for name, t in maps.items()},
        gradcam=gradcam(maps[last_stage], net.segment_map(gradient, 1).cpu(), size),
    )
