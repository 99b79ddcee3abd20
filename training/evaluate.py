"""Evaluate a checkpoint on clip folders through the project's own decode path.

    python -m training.evaluate --model runs/cv/fold4 --out runs/cv/fold4_eval.json

compares the fold-4 model (trained on folds 1, 2, 3, 5) on the 400 fold-4
clips twice: the 16 kHz 8-bit copies it was trained alongside, and the
original 44.1 kHz 16-bit files, decoded and resampled by audify_batch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from audify_batch.model.checkpoint import CheckpointError, ModelCard, load_checkpoint
from audify_batch.model.inference import Precision, predict_batch
from audify_batch.model.network import Network
from training.data import DEFAULT_ESC50_ROOT, Clip, DatasetError, clip_waveform, load_dataset


def accuracy(
    model: Network, card: ModelCard, clips: list[Clip], precision: Precision, batch_size: int = 64
) -> float:
    frontend, segment_s = card.frontend, card.segment_s
    correct = 0
    for start in range(0, len(clips), batch_size):
        batch = clips[start : start + batch_size]
        waves = torch.from_numpy(np.stack([clip_waveform(clip.path, frontend, segment_s) for clip in batch]))
        probs, _ = predict_batch(model, waves, precision)
        targets = torch.tensor([clip.target for clip in batch])
        correct += int((probs.argmax(1) == targets).sum())
    return correct / len(clips)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__)
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data16k", type=Path, default=DEFAULT_ESC50_ROOT)
    parser.add_argument("--data44k", type=Path, default=DEFAULT_ESC50_ROOT.parent / "esc50-fold4-44k")
    parser.add_argument("--fold", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        model, card = load_checkpoint(args.model)
        clips16 = [c for c in load_dataset(args.data16k).clips if c.fold == args.fold]
        clips44 = list(load_dataset(args.data44k, "fold4.csv", "audio", expect_full=False).clips)
    except (CheckpointError, DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.fold in card.training.get("training_folds", []):
        print(f"error: fold {args.fold} was used to train {args.model}", file=sys.stderr)
        return 2
    result = {
        "model": str(args.model),
        "held_out_fold": args.fold,
        "n_clips_16k": len(clips16),
        "n_clips_44k": len(clips44),
    }
    for precision in (Precision.FP32, Precision.BF16):
        suffix = "" if precision is Precision.FP32 else "_bf16"
        result[f"fold{args.fold}_16k_accuracy{suffix}"] = round(accuracy(model, card, clips16, precision), 4)
        result[f"fold{args.fold}_44k_accuracy{suffix}"] = round(accuracy(model, card, clips44, precision), 4)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
