"""Command line: 5-fold cross-validation, and the shipped model on all clips.

    python -m training.train cv   --data ../shared/data/esc50 --out runs/cv
    python -m training.evaluate --model runs/cv/fold4 --out runs/cv/fold4_eval.json
    python -m training.train full --data ../shared/data/esc50 --out audify_batch/model/weights/default \
        --cv-results runs/cv/cv_results.json --eval-results runs/cv/fold4_eval.json

Each fold's model is saved under OUT/foldK, its accuracy appended to
OUT/cv_results.json (a rerun skips folds already done).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from audify_batch.model.checkpoint import ModelCard, save_checkpoint
from audify_batch.model.features import FrontendConfig
from audify_batch.model.network import POOLINGS, ArchConfig, AudioClassifier
from training.data import (
    DEFAULT_ESC50_ROOT,
    ESC50_FOLDS,
    ESC50_LICENCE,
    Dataset,
    DatasetError,
    compute_log_mels,
    load_dataset,
)
from training.recipe import TrainConfig, predict_logits, train_model

MODEL_NAME = "audify-esc50-resnet"
MODEL_VERSION = "1.1.0"
# New models pool max + mean over time; ArchConfig's default stays "mean" for older cards.
TRAINING_POOLING = "freq_mean_time_max_mean"


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def make_card(
    dataset: Dataset,
    frontend: FrontendConfig,
    arch: ArchConfig,
    mean: torch.Tensor,
    std: torch.Tensor,
    training: dict[str, object],
    evaluation: dict[str, object],
) -> ModelCard:
    return ModelCard(
        name=MODEL_NAME,
        version=MODEL_VERSION,
        labels=dataset.labels,
        frontend=frontend,
        arch=arch,
        norm_mean_db=tuple(round(float(v), 5) for v in mean),
        norm_std_db=tuple(round(float(v), 5) for v in std),
        training=training,
        evaluation=evaluation,
    )


def repo_relative(path: Path) -> str:
    """``path`` relative to the repository (``../shared/...``), never a machine's absolute path."""
    repo = Path(__file__).resolve().parents[1]
    return os.path.relpath(path.resolve(), repo)


def training_facts(args: argparse.Namespace, cfg: TrainConfig, folds: list[int]) -> dict[str, object]:
    argv = args.argv if args.argv is not None else sys.argv[1:]
    return {
        "data": "ESC-50",
        "data_path": repo_relative(Path(args.data)),
        "data_description": "ESC-50, 2000 clips, 50 classes, 16 kHz mono, official folds",
        "training_folds": folds,
        "licence": ESC50_LICENCE,
        "command": "python -m training.train " + shlex.join(argv),
        "git_commit": git_commit(),
        "recipe": cfg.to_dict(),
        "torch": torch.__version__,
    }


def _fit_and_save(
    out_dir: Path,
    dataset: Dataset,
    features: torch.Tensor,
    train_mask: torch.Tensor,
    args: argparse.Namespace,
    cfg: TrainConfig,
    evaluation: Callable[[], dict[str, object]],
    log_dir: Path,
) -> tuple[AudioClassifier, ModelCard]:
    """Train on ``train_mask`` and save; ``evaluation`` is read after training, for the card."""
    targets = torch.from_numpy(dataset.targets())
    frontend = FrontendConfig()
    arch = ArchConfig(
        n_classes=len(dataset.labels),
        stem_channels=args.stem_channels,
        stage_channels=args.stage_channels,
        blocks_per_stage=args.blocks,
        pooling=args.pooling,
    )
    folds = sorted({int(f) for f in torch.from_numpy(dataset.folds())[train_mask].tolist()})
    facts = training_facts(args, cfg, folds)  # the commit as training starts
    net, mean, std = train_model(features[train_mask], targets[train_mask], arch, cfg, log_dir)
    model = AudioClassifier(frontend, arch, mean, std)
    # The torch stubs omit the documented to(memory_format=...) overload.
    net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.net = net
    card = make_card(dataset, frontend, arch, mean, std, facts, evaluation())
    return model, save_checkpoint(out_dir, model, card)


def _read_results(results_path: Path, cfg: TrainConfig) -> dict:
    """cv_results.json so far; folds of another recipe are refused before any training."""
    results = json.loads(results_path.read_text()) if results_path.exists() else {"folds": {}}
    if results.get("recipe", cfg.to_dict()) != cfg.to_dict():
        raise SystemExit(f"{results_path} holds folds of another recipe; use another --out")
    return results


def _record_fold(results_path: Path, fold: int, accuracy: float, cfg: TrainConfig) -> dict:
    """Add one fold to cv_results.json, re-read just before writing.

    Folds of one CV can run as separate processes (one per core or machine) into one OUT.
    """
    results = _read_results(results_path, cfg)
    results["folds"][str(fold)] = accuracy
    results["folds"] = dict(sorted(results["folds"].items()))
    results["recipe"] = cfg.to_dict()
    temporary = results_path.with_suffix(f".{fold}.tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n")
    temporary.replace(results_path)
    return results


def _held_out_evaluation(fold: int) -> dict[str, object]:
    """Evaluation facts of a CV fold's card: which fold was held out."""
    return {"held_out_fold": fold}


def run_cv(args: argparse.Namespace, dataset: Dataset, features: torch.Tensor, cfg: TrainConfig) -> None:
    out = Path(args.out)
    results_path = out / "cv_results.json"
    results = _read_results(results_path, cfg)
    fold_ids = torch.from_numpy(dataset.folds())
    targets = torch.from_numpy(dataset.targets())
    for fold in args.folds:
        if str(fold) in results["folds"]:
            print(f"fold {fold}: done before, {results['folds'][str(fold)]:.4f}")
            continue
        started = time.perf_counter()
        test_mask = fold_ids == fold
        model, _ = _fit_and_save(
            out / f"fold{fold}",
            dataset,
            features,
            ~test_mask,
            args,
            cfg,
            functools.partial(_held_out_evaluation, fold),
            out / f"fold{fold}" / "tb",
        )
        logits = predict_logits(
            model.net, features[test_mask], model.norm_mean_db.squeeze(1), model.norm_std_db.squeeze(1)
        )
        accuracy = float((logits.argmax(1) == targets[test_mask]).float().mean())
        results = _record_fold(results_path, fold, accuracy, cfg)
        print(f"fold {fold}: accuracy {accuracy:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    accs = list(results["folds"].values())
    if len(accs) > 1:
        print(f"mean {statistics.mean(accs):.4f} +- {statistics.stdev(accs):.4f} over {len(accs)} folds")


def cv_summary(path: Path) -> dict[str, object]:
    results = json.loads(Path(path).read_text())
    accs = [results["folds"][str(f)] for f in ESC50_FOLDS if str(f) in results["folds"]]
    summary = dict(results)
    summary.pop("recipe", None)
    summary["cv_fold_accuracy"] = summary.pop("folds")
    if len(accs) > 1:
        summary["cv_mean_accuracy"] = round(statistics.mean(accs), 4)
        summary["cv_std_accuracy"] = round(statistics.stdev(accs), 4)
    return summary


def _evaluation_files(args: argparse.Namespace) -> dict[str, object]:
    """CV and evaluation results for the card, read when training ends (CV may run alongside)."""
    evaluation = cv_summary(args.cv_results) if args.cv_results else {}
    for path in args.eval_results:
        evaluation.update(json.loads(Path(path).read_text()))
    return evaluation


def run_full(args: argparse.Namespace, dataset: Dataset, features: torch.Tensor, cfg: TrainConfig) -> None:
    all_mask = torch.ones(len(dataset.clips), dtype=torch.bool)
    evaluation = functools.partial(_evaluation_files, args)
    _, card = _fit_and_save(
        Path(args.out), dataset, features, all_mask, args, cfg, evaluation, Path(args.tb_dir)
    )
    print(f"wrote {args.out} ({card.name} {card.version}, weights {card.weights_sha256[:12]})")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("mode", choices=["cv", "full"])
    parser.add_argument("--data", default=str(DEFAULT_ESC50_ROOT), help="ESC-50 folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--folds", default=ESC50_FOLDS, type=_ints, help="held-out folds, e.g. 1,2")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--stem-channels", type=int, default=ArchConfig.stem_channels)
    parser.add_argument(
        "--stage-channels", type=_ints, default=ArchConfig.stage_channels, help="e.g. 32,64,128,256"
    )
    parser.add_argument(
        "--blocks", type=_ints, default=ArchConfig.blocks_per_stage, help="residual blocks per stage"
    )
    parser.add_argument("--pooling", default=TRAINING_POOLING, choices=sorted(POOLINGS))
    parser.add_argument(
        "--time-stretch",
        type=float,
        default=TrainConfig.max_time_stretch,
        help="max time-stretch fraction, e.g. 0.2",
    )
    parser.add_argument(
        "--freq-shift", type=int, default=TrainConfig.freq_shift_bins, help="max mel-band shift"
    )
    parser.add_argument(
        "--exclude-folds",
        type=_ints,
        default=(),
        help="drop these folds entirely (recipe selection on an inner split)",
    )
    parser.add_argument("--limit-clips", type=int, default=0, help="use only N clips (smoke tests)")
    parser.add_argument("--tb-dir", default="runs/tb/full", help="TensorBoard logs of the full run")
    parser.add_argument("--cv-results", help="cv_results.json to copy into the model card (full)")
    parser.add_argument(
        "--eval-results",
        nargs="*",
        default=[],
        help="evaluation JSON files (training.evaluate) for the model card (full)",
    )
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = replace(
        TrainConfig(),
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        max_time_stretch=args.time_stretch,
        freq_shift_bins=args.freq_shift,
    )
    try:
        dataset = load_dataset(Path(args.data), expect_full=args.limit_clips == 0)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.exclude_folds:
        kept = tuple(clip for clip in dataset.clips if clip.fold not in args.exclude_folds)
        dataset = Dataset(kept, dataset.labels)
    if args.limit_clips:
        step = max(1, len(dataset.clips) // args.limit_clips)
        dataset = Dataset(dataset.clips[::step][: args.limit_clips], dataset.labels)
    started = time.perf_counter()
    features = compute_log_mels(dataset.clips, FrontendConfig(), ModelCard.segment_s)
    print(f"log-mels of {len(features)} clips in {time.perf_counter() - started:.1f} s", flush=True)
    (run_cv if args.mode == "cv" else run_full)(args, dataset, features, cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
