"""Command line: fine-tune the YAMNet-based model's ESC-50 branch on cached trunk outputs.

    python -m training.yamnet_train cache  --views 8
    python -m training.yamnet_train select --grid tuned_blocks=0,1,2
    python -m training.yamnet_train cv
    python -m training.yamnet_train full --cv-dir runs/yamnet-ft/cv --out runs/yamnet-ft/full

``cache`` writes the trunk outputs (training/yamnet_cache.py); ``select`` compares recipes on
an inner split (train on folds 2-4, validate on fold 5, fold 1 unused); ``cv`` runs 5-fold
CV with one recipe, saves each fold's model (OUT/foldK), its accuracy (cv_results.json) and
the out-of-fold class scores of all clips (oof.npz); ``full`` trains on all folds and writes
the checkpoint, its card carrying the CV and the fold-4 model's 16 kHz / 44.1 kHz figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import statistics
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audify_batch.model.checkpoint import save_checkpoint
from audify_batch.model.cpu_memory import keep_freed_memory
from audify_batch.model.yamnet import load_yamnet
from audify_batch.model.yamnet_classifier import YamnetClassifier
from training.data import DEFAULT_ESC50_ROOT, ESC50_FOLDS, Dataset, load_dataset
from training.train import git_commit
from training.yamnet_cache import build_cache, cache_augment, cache_dir, derive_cache, load_views
from training.yamnet_card import (
    ESC50_FINETUNING_LICENCE,
    YAMNET_LICENCE,
    fold4_evaluation,
    make_card,
    repo_relative,
)
from training.yamnet_features import ViewAugment, load_waveforms
from training.yamnet_recipe import YamnetRecipe, advance, predict_esc_logits, train_esc_branch

RUNS = Path("runs/yamnet-ft")
WAVEFORMS_NPY = Path("runs/ft/esc50_16k.npy")  # all 2000 clips at 16 kHz, dataset order
CACHE_SEED = 20261202
HELD_OUT_FILE = "held_out.npz"


def esc50_waveforms(args: argparse.Namespace) -> np.ndarray:
    """The 2000 clips (N, 80000) float32 in dataset order: the saved array, else decoded."""
    dataset = load_dataset(Path(args.data))
    path = Path(args.waveforms)
    if path.is_file():
        waveforms = np.load(path, mmap_mode="r")
        if waveforms.shape == (len(dataset.clips), 80_000):
            return waveforms
    return load_waveforms(dataset.clips)


def run_cache(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    directory = cache_dir(Path(args.cache_dir), args.coverage, args.cache_blocks)
    if args.from_blocks:
        source = cache_dir(Path(args.cache_dir), args.coverage, args.from_blocks)
        derive_cache(source, directory, args.coverage, args.cache_blocks, args.views)
        return
    augment = ViewAugment(max_attenuation_db=args.max_attenuation_db)
    build_cache(
        esc50_waveforms(args), directory, args.coverage, args.cache_blocks, args.views, CACHE_SEED, augment
    )
    print(f"cache {directory}: {time.perf_counter() - started:.0f} s")


def _typed(kind: type, text: str) -> object:
    """``text`` as a recipe value of ``kind`` (``true``/``false`` for flags)."""
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise SystemExit(f"expected true or false, not {text!r}")
        return text.lower() in ("true", "1")
    return kind(text)


def with_overrides(recipe: YamnetRecipe, text: str) -> YamnetRecipe:
    """``recipe`` with ``key=value,key=value`` applied (values typed like the defaults)."""
    types = {f.name: type(getattr(recipe, f.name)) for f in fields(recipe)}
    changes: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"unknown recipe field {key!r}; known: {sorted(types)}")
        changes[key] = _typed(types[key], value)
    return replace(recipe, **changes)


def new_model(recipe: YamnetRecipe) -> YamnetClassifier:
    """The model to fine-tune: YAMNet's weights everywhere, tuned copies of its last blocks."""
    model = YamnetClassifier(recipe.arch())
    model.load_yamnet(load_yamnet(coverage=recipe.coverage))
    # Contiguous weights: channels-last halves the speed of YAMNet's depthwise convs on CPU.
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return model.eval()


def fit(
    recipe: YamnetRecipe, views: torch.Tensor, targets: torch.Tensor, n_classes: int, log: bool
) -> YamnetClassifier:
    """A model fine-tuned on ``views`` (V, N, ...), already advanced to the tuned blocks' input."""
    model = new_model(recipe)
    train_esc_branch(model.net, views[: recipe.n_views], targets, recipe, n_classes, log=log)
    return model


def score_summary(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Accuracy, and how well the true class's score separates from the other classes' scores
    (what per-class thresholds need): ROC AUC over all clip x class pairs, and the share of
    clips whose true-class score beats the 99.9th percentile of the wrong-class scores."""
    true = scores[np.arange(len(targets)), targets]
    wrong_mask = np.ones_like(scores, dtype=bool)
    wrong_mask[np.arange(len(targets)), targets] = False
    wrong = np.sort(scores[wrong_mask])
    auc = float(np.searchsorted(wrong, true, side="left").mean() / len(wrong))
    cut = float(np.quantile(wrong, 0.999))
    return {
        "accuracy": round(float((scores.argmax(1) == targets).mean()), 4),
        "pair_auc": round(auc, 5),
        "true_above_wrong_p999": round(float((true > cut).mean()), 4),
    }


def class_scores(logits: torch.Tensor, activation: str) -> np.ndarray:
    scores = torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=1)
    return scores.numpy()


def cached_inputs(
    args: argparse.Namespace, recipe: YamnetRecipe, n_views: int, clips: np.ndarray
) -> torch.Tensor:
    """Views 0 .. n_views - 1 of ``clips``, advanced to the tuned blocks' input (V, N, ...)."""
    directory = cache_dir(Path(args.cache_dir), recipe.coverage, args.cache_blocks)
    started = time.perf_counter()
    views = load_views(directory, n_views, clips)
    net = new_model(recipe).net
    advanced = torch.stack([advance(net, view, args.cache_blocks) for view in views])
    print(
        f"{n_views} views of {len(clips)} clips at tuned_blocks {recipe.tuned_blocks}: "
        f"{tuple(advanced.shape)} in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return advanced


def run_select(args: argparse.Namespace, dataset: Dataset, recipe: YamnetRecipe) -> None:
    """Each ``--try`` recipe trained on the inner training folds, scored on the validation fold."""
    folds, targets = dataset.folds(), torch.from_numpy(dataset.targets())
    inner = np.flatnonzero(np.isin(folds, (*args.inner_train, args.inner_val)))
    train = np.isin(folds[inner], args.inner_train)
    out = Path(args.out or RUNS / "select")
    out.mkdir(parents=True, exist_ok=True)
    inputs: dict[tuple[int, str], torch.Tensor] = {}
    for overrides in args.tries or [""]:
        tried = with_overrides(recipe, overrides)
        key = (tried.tuned_blocks, tried.coverage)
        if key not in inputs:
            inputs.clear()
            inputs[key] = cached_inputs(args, tried, args.views, inner)
        views = inputs[key]
        started = time.perf_counter()
        model = fit(tried, views[:, train], targets[inner][train], len(dataset.labels), args.log)
        logits = predict_esc_logits(model.net, views[0, ~train])
        summary = score_summary(class_scores(logits, tried.esc_activation), dataset.targets()[inner][~train])
        record = {
            "overrides": overrides,
            **summary,
            "seconds": round(time.perf_counter() - started),
            "inner_train": list(args.inner_train),
            "inner_val": args.inner_val,
            "recipe": tried.to_dict(),
        }
        with (out / "results.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(f"[{overrides or 'base'}] val {summary} ({record['seconds']} s)", flush=True)


def training_facts(args: argparse.Namespace, recipe: YamnetRecipe, folds: list[int]) -> dict[str, object]:
    return {
        "data": "ESC-50",
        "data_path": repo_relative(Path(args.data)),
        "data_description": "ESC-50, 2000 clips, 50 classes, 16 kHz mono, official folds",
        "training_folds": folds,
        "licence": f"{YAMNET_LICENCE}; {ESC50_FINETUNING_LICENCE}",
        "command": "python -m training.yamnet_train " + shlex.join(args.argv),
        "git_commit": git_commit(),
        "recipe": recipe.to_dict(),
        "cache": {
            "cache_blocks": args.cache_blocks,
            "seed": CACHE_SEED,
            "augment": cache_augment(cache_dir(Path(args.cache_dir), recipe.coverage, args.cache_blocks)),
            "views": "view 0: the clip as it is (float32); views 1..: augmented, trunk in bf16",
        },
        "torch": torch.__version__,
    }


def _save(
    out_dir: Path,
    model: YamnetClassifier,
    dataset: Dataset,
    facts: dict[str, object],
    evaluation: dict[str, object],
) -> None:
    card = make_card(dataset.labels, model.arch, facts, evaluation)
    stamped = save_checkpoint(out_dir, model, card)
    print(f"wrote {out_dir} ({stamped.name} {stamped.version}, weights {stamped.weights_sha256[:12]})")


def run_cv(args: argparse.Namespace, dataset: Dataset, recipe: YamnetRecipe) -> None:
    """The ``--folds`` of a 5-fold CV; folds can run as separate processes into one OUT (each
    writes OUT/foldK/); whichever finds all five done writes cv_results.json and oof.npz."""
    out = Path(args.out or RUNS / "cv")
    folds, targets = dataset.folds(), torch.from_numpy(dataset.targets())
    views = cached_inputs(args, recipe, recipe.n_views, np.arange(len(folds)))
    for fold in args.folds:
        started = time.perf_counter()
        train = folds != fold
        model = fit(recipe, views[:, train], targets[train], len(dataset.labels), args.log)
        logits = predict_esc_logits(model.net, views[0, ~train]).numpy()
        accuracy = float((logits.argmax(1) == dataset.targets()[~train]).mean())
        facts = training_facts(args, recipe, sorted(set(folds[train].tolist())))
        evaluation = {"held_out_fold": fold, "held_out_accuracy": round(accuracy, 4)}
        _save(out / f"fold{fold}", model, dataset, facts, evaluation)
        seconds = round(time.perf_counter() - started)
        np.savez(
            out / f"fold{fold}" / HELD_OUT_FILE,
            logits=logits,
            recipe=json.dumps(recipe.to_dict()),
            accuracy=accuracy,
            seconds=seconds,
        )
        print(f"fold {fold}: accuracy {accuracy:.4f} ({seconds} s)", flush=True)
    assemble_cv(out, dataset, recipe)


def assemble_cv(out: Path, dataset: Dataset, recipe: YamnetRecipe) -> None:
    """cv_results.json and oof.npz (class scores with the final activation, targets, folds)
    once every fold's held-out predictions are in OUT."""
    paths = {fold: out / f"fold{fold}" / HELD_OUT_FILE for fold in ESC50_FOLDS}
    if not all(path.is_file() for path in paths.values()):
        return
    folds = dataset.folds()
    logits = np.zeros((len(folds), len(dataset.labels)), dtype=np.float32)
    results: dict[str, object] = {"recipe": recipe.to_dict(), "folds": {}, "seconds": {}}
    for fold, path in paths.items():
        held_out = np.load(path)
        if json.loads(str(held_out["recipe"])) != recipe.to_dict():
            raise SystemExit(f"{path} was trained with another recipe; use another --out")
        logits[folds == fold] = held_out["logits"]
        results["folds"][str(fold)] = round(float(held_out["accuracy"]), 4)  # type: ignore[index]
        results["seconds"][str(fold)] = int(held_out["seconds"])  # type: ignore[index]
    scores = class_scores(torch.from_numpy(logits), recipe.esc_activation)
    np.savez(
        out / "oof.npz",
        scores=scores,
        logits=logits,
        targets=dataset.targets(),
        folds=folds,
        activation=recipe.esc_activation,
    )
    results["mean"] = round(float((scores.argmax(1) == dataset.targets()).mean()), 4)
    results["oof"] = score_summary(scores, dataset.targets())
    (out / "cv_results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"CV {results['folds']} mean {results['mean']:.4f}; out-of-fold {results['oof']}")


def cv_evaluation(cv_dir: Path) -> dict[str, object]:
    results = json.loads((cv_dir / "cv_results.json").read_text())
    accs = [results["folds"][str(f)] for f in ESC50_FOLDS]
    return {
        "cv_fold_accuracy": results["folds"],
        "cv_mean_accuracy": round(statistics.mean(accs), 4),
        "cv_std_accuracy": round(statistics.stdev(accs), 4),
        "cv_out_of_fold_scores": repo_relative(cv_dir / "oof.npz"),
        "cv_out_of_fold_separation": results.get("oof", {}),
    }


def _wait_for_cv(cv_dir: Path, wait_s: float) -> dict:
    """cv_results.json of ``cv_dir`` (CV folds may still be running alongside: wait for them)."""
    path = cv_dir / "cv_results.json"
    deadline = time.monotonic() + wait_s
    while not path.is_file():
        if time.monotonic() > deadline:
            raise SystemExit(f"no {path} after {wait_s:.0f} s; run the cv command first")
        time.sleep(10)
    return json.loads(path.read_text())


def run_full(args: argparse.Namespace, dataset: Dataset, recipe: YamnetRecipe) -> None:
    """Train on all folds, then (once the CV of the same recipe is complete) evaluate the fold-4
    CV model at 16 and 44.1 kHz and write the checkpoint with both in its card."""
    views = cached_inputs(args, recipe, recipe.n_views, np.arange(len(dataset.clips)))
    started = time.perf_counter()
    facts = training_facts(args, recipe, list(ESC50_FOLDS))
    model = fit(recipe, views, torch.from_numpy(dataset.targets()), len(dataset.labels), args.log)
    print(f"trained on all folds in {time.perf_counter() - started:.0f} s", flush=True)
    del views
    cv_dir = Path(args.cv_dir)
    if _wait_for_cv(cv_dir, args.wait_cv_s)["recipe"] != recipe.to_dict():
        raise SystemExit(f"{cv_dir} was trained with another recipe")
    started = time.perf_counter()
    evaluation = cv_evaluation(cv_dir)
    evaluation.update(fold4_evaluation(cv_dir / "fold4", Path(args.data), esc50_waveforms(args)))
    if args.selection_note:
        evaluation["recipe_selection"] = Path(args.selection_note).read_text().strip()
    print(f"fold-4 evaluation in {time.perf_counter() - started:.0f} s", flush=True)
    _save(Path(args.out or RUNS / "full"), model, dataset, facts, evaluation)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def add_recipe_flags(parser: argparse.ArgumentParser) -> None:
    for field in fields(YamnetRecipe):
        default = field.default
        kind = type(default)
        parser.add_argument(
            "--" + field.name.replace("_", "-"), type=functools.partial(_typed, kind), default=default
        )


def recipe_from_args(args: argparse.Namespace) -> YamnetRecipe:
    return YamnetRecipe(**{field.name: getattr(args, field.name) for field in fields(YamnetRecipe)})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.yamnet_train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("mode", choices=["cache", "select", "cv", "full"])
    parser.add_argument("--data", default=str(DEFAULT_ESC50_ROOT), help="ESC-50 folder")
    parser.add_argument("--waveforms", default=str(WAVEFORMS_NPY), help="saved 16 kHz clips (.npy)")
    parser.add_argument("--cache-dir", default=str(RUNS / "cache"))
    parser.add_argument("--cache-blocks", type=int, default=3, help="cut before the last N blocks")
    parser.add_argument("--views", type=int, default=8, help="views to cache (cache) or load (select)")
    parser.add_argument(
        "--max-attenuation-db", type=float, default=0.0, help="views attenuated by up to N dB more (cache)"
    )
    parser.add_argument("--from-blocks", type=int, default=0, help="derive from this cut (cache)")
    parser.add_argument("--out", help="output folder (default runs/yamnet-ft/<mode>)")
    parser.add_argument("--folds", type=_ints, default=ESC50_FOLDS, help="held-out folds (cv)")
    parser.add_argument("--inner-train", type=_ints, default=(2, 3, 4), help="inner training folds (select)")
    parser.add_argument("--inner-val", type=int, default=5, help="inner validation fold (select)")
    parser.add_argument("--try", dest="tries", action="append", help="recipe overrides k=v,k=v (select)")
    parser.add_argument("--cv-dir", default=str(RUNS / "cv"), help="CV of the same recipe (full)")
    parser.add_argument("--wait-cv-s", type=float, default=3600, help="wait this long for the CV (full)")
    parser.add_argument("--selection-note", help="text file: how the recipe was chosen (full)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--log", action="store_true", help="print every epoch's loss")
    add_recipe_flags(parser)
    args = parser.parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "cache":
        run_cache(args)
        return 0
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # activations reuse their pages batch after batch
    dataset = load_dataset(Path(args.data))
    {"select": run_select, "cv": run_cv, "full": run_full}[args.mode](args, dataset, recipe_from_args(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
