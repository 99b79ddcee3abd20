"""Model cards of the YAMNet-based model and the fold-4 model's evaluation at 16 and 44.1 kHz."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from audify_batch.model.checkpoint import ModelCard, load_checkpoint
from audify_batch.model.families import FAMILY_YAMNET, YamnetArch
from audify_batch.model.features import FrontendConfig
from audify_batch.model.inference import Precision, score_batch
from audify_batch.model.yamnet import load_audioset_labels
from audify_batch.model.yamnet_frontend import (
    FFT_SAMPLES,
    FRAME_SAMPLES,
    HOP_SAMPLES,
    MEL_MAX_HZ,
    MEL_MIN_HZ,
    N_MELS,
    SAMPLE_RATE_HZ,
)
from training.data import SHARED_DATA, load_dataset
from training.yamnet_features import load_waveforms

MODEL_NAME = "audify-esc50-yamnet"
MODEL_VERSION = "2.1.0"
FOLD4_44K_ROOT = SHARED_DATA / "esc50-fold4-44k"
YAMNET_LICENCE = (
    "Apache-2.0 for the YAMNet-derived weights (backbone, AudioSet head, and the starting point of "
    "the fine-tuned blocks): YAMNet by Google (Manoj Plakal, Dan Ellis), trained on AudioSet "
    "(Gemmeke et al., ICASSP 2017); converted from the TFLite classifier, Copyright 2020 The "
    "TensorFlow Authors, Apache License 2.0 (audify_batch/model/weights/yamnet/LICENSE)"
)
ESC50_FINETUNING_LICENCE = (
    "CC BY-NC 3.0 (non-commercial) for what fine-tuning on ESC-50 adds (the tuned blocks and the "
    "ESC-50 head): ESC-50 by Karol J. Piczak, 'ESC: Dataset for Environmental Sound "
    "Classification', ACM MM 2015"
)

# YAMNet's own frontend, described in the card's FrontendConfig terms (no centring, no top_db).
YAMNET_FRONTEND = FrontendConfig(
    sample_rate_hz=SAMPLE_RATE_HZ,
    n_fft=FFT_SAMPLES,
    win_length=FRAME_SAMPLES,
    hop_length=HOP_SAMPLES,
    n_mels=N_MELS,
    f_min_hz=MEL_MIN_HZ,
    f_max_hz=MEL_MAX_HZ,
    top_db=None,
)


def repo_relative(path: Path) -> str:
    """``path`` relative to the repository (``../shared/...``), never a machine's absolute path."""
    repo = Path(__file__).resolve().parents[1]
    return os.path.relpath(Path(path).resolve(), repo)


def make_card(
    labels: tuple[str, ...], arch: YamnetArch, training: dict[str, object], evaluation: dict[str, object]
) -> ModelCard:
    return ModelCard(
        name=MODEL_NAME,
        version=MODEL_VERSION,
        labels=labels,
        frontend=YAMNET_FRONTEND,
        arch=arch,
        norm_mean_db=(),
        norm_std_db=(),
        training=training,
        evaluation=evaluation,
        family=FAMILY_YAMNET,
        audioset_labels=load_audioset_labels(),
    )


def _accuracy(model_dir: Path, waveforms: np.ndarray, targets: np.ndarray, precision: Precision) -> float:
    model, _ = load_checkpoint(model_dir)
    hits = 0
    for start in range(0, len(waveforms), 64):
        batch = torch.from_numpy(np.ascontiguousarray(waveforms[start : start + 64]))
        probs = score_batch(model, batch, precision).probs
        hits += int((probs.argmax(1).numpy() == targets[start : start + 64]).sum())
    return hits / len(waveforms)


def fold4_evaluation(model_dir: Path, esc50_root: Path, esc50_waveforms: np.ndarray) -> dict[str, object]:
    """The fold-4 CV model on fold 4's 16 kHz clips and on the 44.1 kHz originals (decoded and
    resampled by the pipeline's ``read_mono``), in float32 and bf16 autocast."""
    dataset = load_dataset(esc50_root)
    fold4 = dataset.folds() == 4
    originals = load_dataset(FOLD4_44K_ROOT, csv_name="fold4.csv", expect_full=False)
    sets = {
        "16k": (np.asarray(esc50_waveforms[fold4]), dataset.targets()[fold4]),
        "44k": (load_waveforms(originals.clips), originals.targets()),
    }
    evaluation: dict[str, object] = {"model": repo_relative(model_dir), "held_out_fold": 4}
    for name, (waveforms, targets) in sets.items():
        evaluation[f"n_clips_{name}"] = len(targets)
        for precision, suffix in ((Precision.FP32, ""), (Precision.BF16, "_bf16")):
            accuracy = _accuracy(model_dir, waveforms, targets, precision)
            evaluation[f"fold4_{name}_accuracy{suffix}"] = round(accuracy, 4)
            print(f"fold 4 {name} {precision.value}: {accuracy:.4f}", flush=True)
    evaluation["fold4_44k_data_path"] = repo_relative(FOLD4_44K_ROOT)
    return evaluation
