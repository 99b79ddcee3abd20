"""Per-class thresholds of ``detected``: when a segment holds one of the known sounds, and when
nothing known is there.

Fitted on two kinds of scores of the model being shipped:

- positives: out-of-fold ESC-50 scores (each clip scored by the CV model that never saw it);
- negatives: scores of generated sounds that are no ESC-50 class (bench/open_set.py built
  with a fitting seed; the open-set benchmark uses another seed, so it checks unseen sounds).

Two parts decide ``detected``: the known-sound gate (training/known_gate.py, a logistic
regression over the AudioSet scores) says whether any known sound is there at all, and class
c's threshold says whether it is c. Thresholds start at a low quantile of each class's
positives and are raised greedily until at most ``max_negative_rate`` of the negatives detect
anything; the gate's cut is chosen on a grid for the best recall. Every rate is held out: a
positive's gate never saw its fold, a negative's never saw its seed. The card records how:
data, seeds, cut, rates, and the share of each kind of negative a gate that never saw that kind
silences.

    python -m training.thresholds --model runs/yamnet-ft/full --oof runs/yamnet-ft/cv/oof.npz
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, astuple, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from audify_batch.model.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from audify_batch.model.cpu_memory import keep_freed_memory
from audify_batch.model.inference import Precision, score_batch
from audify_batch.model.network import Network
from training.data import clip_waveform
from training.known_gate import (
    L2_C,
    GateHoldout,
    fit_gate,
    gate_features,
    held_out_probabilities,
    unseen_kind_rates,
)
from training.yamnet_features import YAMNET_RATE

CHECK_SEED = 0  # the open-set benchmark's (bench/bench_open_set.py): never fitted on
FIT_SEEDS = (1, 2, 3, 4, 5)
RECALL_QUANTILES = (0.01, 0.02, 0.04, 0.06, 0.08, 0.10)
# No class is detected below this score: a softmax over 50 classes gives 0.02 to each by chance,
# and the lowest positive of a class is an outlier (one clip of 40) that must not set its threshold.
MIN_THRESHOLD = 0.1
# The gate's cut. Not below 0.1: a lower cut keeps ~0.2 % more ESC-50 clips but lets through
# more of the kinds of sound the fit never saw, which the thresholds must then stop alone.
GATE_MIN_PROBABILITIES = (0.1, 0.2, 0.3, 0.5)


@dataclass(frozen=True)
class ThresholdFit:
    thresholds: tuple[float, ...]
    recall_quantile: float
    positive_recall: float  # share of positives whose true class is detected
    negative_rate: float  # share of negatives with any detection
    n_positives: int
    n_negatives: int


def fit_thresholds(
    pos_scores: np.ndarray,
    pos_targets: np.ndarray,
    neg_scores: np.ndarray,
    max_negative_rate: float = 0.05,
) -> ThresholdFit:
    """Per class, start at a low quantile of its positives' scores, then raise, greedily, the
    threshold that silences the most negatives per positive lost, until at most
    ``max_negative_rate`` of the negatives detect anything; keep the start quantile with the
    best recall. Positives the gate silenced come with scores of -1 (missed whatever the
    threshold); negatives it silenced are left out by the caller and count as empty."""
    fits = [_greedy(rq, pos_scores, pos_targets, neg_scores, max_negative_rate) for rq in RECALL_QUANTILES]
    return max(fits, key=lambda fit: (fit.negative_rate <= max_negative_rate, fit.positive_recall))


def _greedy(
    rq: float, pos: np.ndarray, targets: np.ndarray, neg: np.ndarray, max_rate: float
) -> ThresholdFit:
    n_classes = pos.shape[1]
    true_scores = pos[np.arange(len(pos)), targets]
    t = np.array([_start(true_scores[(targets == c) & (true_scores >= 0)], rq) for c in range(n_classes)])
    while len(neg) and float(np.mean((neg >= t).any(axis=1))) > max_rate:
        firing = (neg >= t).any(axis=1)
        best, best_value = None, -1.0
        for c in range(n_classes):
            above = neg[firing, c][neg[firing, c] >= t[c]]
            if not len(above):
                continue
            raised = t.copy()
            raised[c] = float(above.min()) + 1e-6
            gain = int(firing.sum() - (neg >= raised).any(axis=1).sum())
            cost = int(np.sum((targets == c) & (true_scores >= t[c]) & (true_scores < raised[c])))
            value = gain / (cost + 0.5)
            if value > best_value:
                best, best_value = raised, value
        if best is None:
            break
        t = best
    return _evaluate(t, pos, targets, neg, rq)


def _start(true_scores: np.ndarray, rq: float) -> float:
    """A class's starting threshold: a low quantile of its positives' scores that the gate kept
    (silenced ones come as -1)."""
    return max(float(np.quantile(true_scores, rq)), MIN_THRESHOLD) if len(true_scores) else MIN_THRESHOLD


def _evaluate(
    t: np.ndarray, pos: np.ndarray, targets: np.ndarray, neg: np.ndarray, rq: float
) -> ThresholdFit:
    recall = float(np.mean(pos[np.arange(len(pos)), targets] >= t[targets]))
    negative_rate = float(np.mean((neg >= t).any(axis=1))) if len(neg) else 0.0
    thresholds = tuple(round(float(x), 6) for x in t)
    return ThresholdFit(thresholds, rq, recall, negative_rate, len(pos), len(neg))


def detection_rates(
    thresholds: np.ndarray, pos: np.ndarray, targets: np.ndarray, neg: np.ndarray
) -> tuple[float, float]:
    """(share of positives whose true class is detected, share of negatives with none detected)."""
    recall = float(np.mean(pos[np.arange(len(pos)), targets] >= thresholds[targets]))
    empty = float(np.mean(~(neg >= thresholds).any(axis=1)))
    return recall, empty


@dataclass(frozen=True)
class Scored:
    """ESC-50 scores (N, n_classes) and AudioSet scores (N, n_audioset) per clip."""

    probs: np.ndarray
    audioset: np.ndarray

    def __add__(self, other: Scored) -> Scored:
        return Scored(*(np.concatenate([a, b]) for a, b in zip(astuple(self), astuple(other), strict=True)))


@torch.inference_mode()
def score_waveforms(
    model: Network, waveforms: np.ndarray, precision: Precision, batch_size: int = 32
) -> Scored:
    """Scores of 5-second 16 kHz waveforms (N, 80000), as the pipeline scores a segment."""
    parts = []
    for start in range(0, len(waveforms), batch_size):
        scores = score_batch(model, torch.from_numpy(waveforms[start : start + batch_size]), precision)
        if scores.audioset is None:
            raise ValueError("the known-sound gate needs a model with an AudioSet head")
        parts.append(Scored(scores.probs.float().numpy(), scores.audioset.float().numpy()))
    return sum(parts[1:], parts[0])


@dataclass(frozen=True)
class NegativeSet:
    """Generated open-set clips (N, 80000) with the seed and the kind of each."""

    waveforms: np.ndarray
    seeds: np.ndarray
    kinds: np.ndarray


def negative_waveforms(seeds: tuple[int, ...]) -> NegativeSet:
    """The generated open sets built with ``seeds``, one after the other."""
    from bench.open_set import build_open_set

    if CHECK_SEED in seeds or not seeds:
        raise ValueError(f"fit on one or more seeds other than {CHECK_SEED} (the check set's)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} repeat: a repeated open set would weigh its clips twice")
    waveforms: list[np.ndarray] = []
    seed_of: list[int] = []
    kinds: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            items = build_open_set(Path(tmp) / f"open-set-{seed}", seed=seed)
            waveforms.extend(clip_waveform(item.path, YAMNET_RATE, 5.0) for item in items)
            seed_of.extend(seed for _ in items)
            kinds.extend(item.kind for item in items)
    return NegativeSet(np.stack(waveforms), np.asarray(seed_of), np.asarray(kinds))


@dataclass(frozen=True)
class GatedFit:
    """Thresholds and the known-sound gate's cut, with their held-out rates."""

    thresholds: ThresholdFit  # rates over all positives and negatives, the gate included
    min_probability: float
    known_silenced: float  # share of ESC-50 clips the gate silences (held out by fold)
    other_silenced: float  # share of negatives the gate silences (held out by seed)


def fit_gated_detection(
    oof: np.ndarray, targets: np.ndarray, neg_probs: np.ndarray, holdout: GateHoldout, max_rate: float
) -> GatedFit:
    """Per gate cut: positives the gate silences count as missed, negatives it silences as
    empty, and thresholds are fitted on the rest; keep the cut with the best recall whose
    share of negatives detecting anything is at most ``max_rate``."""
    fits = []
    for cut in GATE_MIN_PROBABILITIES:
        known_kept, other_kept = holdout.known >= cut, holdout.other >= cut
        rate_kept = max_rate * len(neg_probs) / max(int(other_kept.sum()), 1)
        fit = fit_thresholds(
            np.where(known_kept[:, None], oof, -1.0), targets, neg_probs[other_kept], rate_kept
        )
        overall = replace(
            fit, negative_rate=fit.negative_rate * other_kept.mean(), n_negatives=len(neg_probs)
        )
        fits.append(GatedFit(overall, cut, float(np.mean(~known_kept)), float(np.mean(~other_kept))))
    return max(fits, key=lambda f: (f.thresholds.negative_rate <= max_rate, f.thresholds.positive_recall))


def _fit_description(
    gated: GatedFit, model_dir: Path, oof_path: Path, negatives: NegativeSet, max_rate: float
) -> dict[str, object]:
    seeds = ",".join(map(str, sorted(set(negatives.seeds.tolist()))))
    return {
        **{k: v for k, v in asdict(gated.thresholds).items() if k != "thresholds"},
        "gate_min_probability": gated.min_probability,
        "gate_l2_c": L2_C,
        "gate_silences_esc50": round(gated.known_silenced, 4),
        "gate_silences_negatives": round(gated.other_silenced, 4),
        "positives": f"out-of-fold ESC-50 scores ({oof_path.name}: each clip scored by the CV model "
        "that did not train on its fold); their AudioSet scores from this model, gated by a gate "
        "fitted without their fold",
        "negatives": f"bench/open_set.py seeds {seeds}, {len(negatives.waveforms)} clips scored "
        f"by this model in fp32 and bf16, each gated by a gate fitted without its seed (the "
        f"open-set benchmark uses seed {CHECK_SEED})",
        "max_negative_rate": max_rate,
        "rule": "detected_c = score_c >= threshold_c and known_gate probability >= its min_probability; "
        "gate: logistic regression over log AudioSet scores, ESC-50 clips against the negatives, "
        "classes balanced; thresholds: from a quantile of each class's positives (at least "
        f"{MIN_THRESHOLD}), raised greedily (most negatives silenced per positive lost) until at "
        "most max_negative_rate of the negatives detect anything; the gate's cut from "
        f"{list(GATE_MIN_PROBABILITIES)} by the best recall",
        "command": f"python -m training.thresholds --model {model_dir} --oof {oof_path} "
        f"--seeds {seeds} --max-negative-rate {max_rate}",
    }


def fit_and_store(
    model_dir: Path, oof_path: Path, max_negative_rate: float, seeds: tuple[int, ...] = FIT_SEEDS
) -> GatedFit:
    """Fit the known-sound gate and the thresholds for the checkpoint in ``model_dir``; write
    them into its card. Negatives are scored in fp32 and bf16 (a negative must stay silent in
    both)."""
    from training.data import SHARED_DATA, load_dataset
    from training.yamnet_features import load_waveforms

    model, card = load_checkpoint(model_dir)
    oof = np.load(oof_path)
    negatives = negative_waveforms(seeds)
    neg = score_waveforms(model, negatives.waveforms, Precision.FP32) + score_waveforms(
        model, negatives.waveforms, Precision.BF16
    )
    neg_seeds, neg_kinds = np.tile(negatives.seeds, 2), np.tile(negatives.kinds, 2)
    dataset = load_dataset(SHARED_DATA / "esc50")
    if not np.array_equal(dataset.targets(), oof["targets"]):
        raise ValueError(f"{oof_path} is not in ESC-50's clip order")
    known = gate_features(score_waveforms(model, load_waveforms(dataset.clips), Precision.BF16).audioset)
    other = gate_features(neg.audioset)
    holdout = held_out_probabilities(known, dataset.folds(), other, neg_seeds)
    gated = fit_gated_detection(oof["scores"], oof["targets"], neg.probs, holdout, max_negative_rate)
    how = _fit_description(gated, model_dir, oof_path, negatives, max_negative_rate)
    how["gate_silences_unseen_kinds"] = unseen_kind_rates(known, other, neg_kinds, gated.min_probability)
    stamped: ModelCard = replace(
        card,
        thresholds=gated.thresholds.thresholds,
        abstain_audioset=(),
        known_gate=fit_gate(known, other).as_gate(gated.min_probability),
        evaluation={**card.evaluation, "thresholds_fit": how},
    )
    save_checkpoint(model_dir, model, stamped)
    return gated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="checkpoint folder (updated in place)")
    parser.add_argument("--oof", type=Path, required=True, help="out-of-fold scores (npz: scores, targets)")
    parser.add_argument("--max-negative-rate", type=float, default=0.05)
    parser.add_argument(
        "--seeds", default=",".join(map(str, FIT_SEEDS)), help=f"open-set seeds to fit on (not {CHECK_SEED})"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    keep_freed_memory()  # activations reuse their pages batch after batch
    seeds = tuple(int(seed) for seed in args.seeds.split(","))
    gated = fit_and_store(args.model, args.oof, args.max_negative_rate, seeds)
    summary = {k: v for k, v in asdict(gated.thresholds).items() if k != "thresholds"}
    print(json.dumps({**summary, "gate_min_probability": gated.min_probability}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
