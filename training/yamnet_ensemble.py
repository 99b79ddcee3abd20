"""Merge separately trained ESC-50 branches into one model: an ensemble over one shared trunk.

    python -m training.yamnet_ensemble --members runs/yamnet-ft/full-att,runs/yamnet-ft/full-att-s2 \\
        --cv-dirs runs/yamnet-ft/cv-att,runs/yamnet-ft/cv-att-s2 --out runs/yamnet-ft/full-ens

Each member is a ``yamnet_train full`` checkpoint (one ESC-50 branch) of one recipe trained with
its own seed; their frozen parts (frontend, backbone, AudioSet head) are YAMNet's and must be
identical. The merged model runs the trunk once, then each member's tuned blocks and head, and
averages their class scores (``YamnetArch.esc_branches``). Its cross-validation is the members'
out-of-fold scores averaged (each clip scored only by models that never saw its fold), written
to OUT-cv/; its fold-4 check merges the members' fold-4 CV models the same way.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from audify_batch.model.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from audify_batch.model.cpu_memory import keep_freed_memory
from audify_batch.model.families import YamnetArch
from audify_batch.model.yamnet_classifier import YamnetClassifier
from training.data import DEFAULT_ESC50_ROOT, load_dataset
from training.train import git_commit
from training.yamnet_card import fold4_evaluation, make_card, repo_relative
from training.yamnet_features import load_waveforms
from training.yamnet_train import cv_evaluation, score_summary


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def merge(member_dirs: list[Path]) -> tuple[YamnetClassifier, list[ModelCard]]:
    """One model with each member's ESC-50 branch, branch 0 the first member's."""
    loaded = [load_checkpoint(d) for d in member_dirs]
    models = [model for model, _ in loaded if isinstance(model, YamnetClassifier)]
    cards = [card for _, card in loaded]
    arch = cards[0].arch
    if len(models) != len(cards) or not isinstance(arch, YamnetArch) or any(c.arch != arch for c in cards):
        raise SystemExit("members must be YAMNet-family models of one architecture")
    if arch.esc_branches != 1:
        raise SystemExit("members must have one ESC-50 branch each")
    if any(c.labels != cards[0].labels or c.audioset_labels != cards[0].audioset_labels for c in cards):
        raise SystemExit("members must rank the same labels in the same order")
    first = models[0]
    for model in models[1:]:
        if not _same(first.frontend, model.frontend) or not all(
            _same(getattr(first.net, part), getattr(model.net, part)) for part in ("backbone", "audioset")
        ):
            raise SystemExit("members must share YAMNet's frontend, frozen backbone and AudioSet head")
    merged = YamnetClassifier(replace(arch, esc_branches=len(models)))
    merged.frontend.load_state_dict(first.frontend.state_dict())
    for part in ("backbone", "audioset", "tuned", "head"):
        getattr(merged.net, part).load_state_dict(getattr(first.net, part).state_dict())
    for tuned, head, model in zip(merged.net.extra_tuned, merged.net.extra_heads, models[1:], strict=True):
        tuned.load_state_dict(model.net.tuned.state_dict())
        head.load_state_dict(model.net.head.state_dict())
    return merged.eval(), cards


def ensemble_cv(cv_dirs: list[Path], out: Path) -> None:
    """cv_results.json and oof.npz of the ensemble: the members' out-of-fold scores averaged."""
    runs = [np.load(d / "oof.npz") for d in cv_dirs]
    targets, folds = runs[0]["targets"], runs[0]["folds"]
    if any(not (np.array_equal(r["targets"], targets) and np.array_equal(r["folds"], folds)) for r in runs):
        raise SystemExit("the members' CVs cover different clips or folds")
    if len({str(r["activation"]) for r in runs}) != 1:
        raise SystemExit("the members' CVs score with different activations")
    scores = np.mean([r["scores"] for r in runs], axis=0)
    hits = scores.argmax(1) == targets
    results = {
        "members": [repo_relative(d) for d in cv_dirs],
        "member_means": [json.loads((d / "cv_results.json").read_text())["mean"] for d in cv_dirs],
        "folds": {str(f): round(float(hits[folds == f].mean()), 4) for f in np.unique(folds)},
        "mean": round(float(hits.mean()), 4),
        "oof": score_summary(scores, targets),
    }
    out.mkdir(parents=True, exist_ok=True)
    np.savez(
        out / "oof.npz", scores=scores, targets=targets, folds=folds, activation=str(runs[0]["activation"])
    )
    (out / "cv_results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"ensemble CV {results['folds']} mean {results['mean']:.4f} (members {results['member_means']})")


def _seed(card: ModelCard) -> object:
    recipe = card.training.get("recipe")
    return recipe.get("seed") if isinstance(recipe, dict) else None


def training_facts(cards: list[ModelCard], members: list[Path], argv: list[str]) -> dict[str, object]:
    return {
        **cards[0].training,
        "command": "python -m training.yamnet_ensemble " + shlex.join(argv),
        "git_commit": git_commit(),
        "ensemble": {
            "members": [repo_relative(d) for d in members],
            "member_commands": [card.training.get("command") for card in cards],
            "member_seeds": [_seed(card) for card in cards],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", required=True, help="comma-separated full checkpoints")
    parser.add_argument("--cv-dirs", required=True, help="their CV folders, in the same order")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--data", default=str(DEFAULT_ESC50_ROOT), help="ESC-50 folder")
    args = parser.parse_args(argv)
    members = [Path(p) for p in args.members.split(",")]
    cv_dirs = [Path(p) for p in args.cv_dirs.split(",")]
    if len(members) != len(cv_dirs) or len(members) < 2:
        raise SystemExit("give two or more members and one CV folder per member")
    torch.set_num_threads(2)
    keep_freed_memory()  # activations reuse their pages batch after batch
    command = sys.argv[1:] if argv is None else argv
    merged, cards = merge(members)
    cv_out = args.out.parent / f"{args.out.name}-cv"
    ensemble_cv(cv_dirs, cv_out)
    fold4_dirs = [d / "fold4" for d in cv_dirs]
    fold4, fold4_cards = merge(fold4_dirs)
    facts = training_facts(fold4_cards, fold4_dirs, command)
    save_checkpoint(cv_out / "fold4", fold4, make_card(cards[0].labels, fold4.arch, facts, {}))
    waveforms = load_waveforms(load_dataset(Path(args.data)).clips)
    evaluation = {**cv_evaluation(cv_out), **fold4_evaluation(cv_out / "fold4", Path(args.data), waveforms)}
    facts = training_facts(cards, members, command)
    card = make_card(cards[0].labels, merged.arch, facts, evaluation)
    stamped = save_checkpoint(args.out, merged, card)
    print(f"wrote {args.out} ({stamped.name} {stamped.version}, weights {stamped.weights_sha256[:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
