"""Per-class thresholds of ``detected``: when a segment holds one of the known sounds, and when
nothing known is there.

Fitted on two kinds of scores of the model being shipped:

- positives: out-of-fold ESC-50 scores (each clip scored by the CV model that never saw it);
- negatives: scores of generated sounds that are no ESC-50 class (bench/open_set.py built
  with a fitting seed; the open-set benchmark uses another seed, so it checks unseen sounds).

Class c's threshold is the larger of the ``recall_quantile`` of its positives' scores (so that
about 1 - q of its clips stay detected) and the ``negative_quantile`` of the negatives' scores
for c (so that few negatives pass it); the two quantiles are chosen on a grid to maximise
recall on the positives while the share of negatives with any detection stays at most
``max_negative_rate``. The card records how: data, seeds, quantiles, rates.

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
from training.yamnet_features import YAMNET_RATE

CHECK_SEED = 0  # the open-set benchmark's (bench/bench_open_set.py): never fitted on
FIT_SEEDS = (1,)
RECALL_QUANTILES = (0.01, 0.02, 0.04, 0.06, 0.08, 0.10)
# No class is detected below this score: a softmax over 50 classes gives 0.02 to each by chance,
# and the lowest positive of a class is an outlier (one clip of 40) that must not set its threshold.
MIN_THRESHOLD = 0.1
ABSTAIN_MIN_SCORES = (0.2, 0.3, 0.5, 0.7)


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
    best recall. Rows of ``neg_scores`` already silenced (AudioSet abstention) are left out by
    the caller and count as empty."""
    fits = [_greedy(rq, pos_scores, pos_targets, neg_scores, max_negative_rate) for rq in RECALL_QUANTILES]
    return max(fits, key=lambda fit: (fit.negative_rate <= max_negative_rate, fit.positive_recall))


def _greedy(
    rq: float, pos: np.ndarray, targets: np.ndarray, neg: np.ndarray, max_rate: float
) -> ThresholdFit:
    n_classes = pos.shape[1]
    true_scores = pos[np.arange(len(pos)), targets]
    t = np.array([float(np.quantile(true_scores[targets == c], rq)) for c in range(n_classes)])
    t = np.maximum(t, MIN_THRESHOLD)
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
    """ESC-50 scores (N, n_classes) and the AudioSet head's top label (index, score) per clip."""

    probs: np.ndarray
    audioset_top: np.ndarray
    audioset_top_score: np.ndarray

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
            raise ValueError("thresholds with AudioSet abstention need a model with an AudioSet head")
        top = scores.audioset.max(dim=1)
        parts.append(Scored(scores.probs.numpy(), top.indices.numpy(), top.values.numpy()))
    return sum(parts[1:], parts[0])


def negative_waveforms(seeds: tuple[int, ...]) -> np.ndarray:
    """The generated open sets built with ``seeds``, as waveforms, one after the other."""
    from bench.open_set import build_open_set

    if CHECK_SEED in seeds or not seeds:
        raise ValueError(f"fit on one or more seeds other than {CHECK_SEED} (the check set's)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} repeat: a repeated open set would weigh its clips twice")
    waveforms: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            items = build_open_set(Path(tmp) / f"open-set-{seed}", seed=seed)
            waveforms.extend(clip_waveform(item.path, YAMNET_RATE, 5.0) for item in items)
    return np.stack(waveforms)


def abstain_set(pos: Scored, neg: Scored, labels: tuple[str, ...], min_score: float) -> tuple[str, ...]:
    """AudioSet labels that are the confident top label of at least 2 negatives and of at most
    0.2 % of the ESC-50 clips: evidence that nothing known is there."""

    def counts(scored: Scored) -> np.ndarray:
        confident = scored.audioset_top[scored.audioset_top_score >= min_score]
        return np.bincount(confident, minlength=len(labels))

    on_neg, on_pos = counts(neg), counts(pos)
    allowed = max(1, int(0.002 * len(pos.probs)))
    return tuple(labels[a] for a in np.flatnonzero((on_neg >= 2) & (on_pos <= allowed)))


def _vetoed(scored: Scored, labels: tuple[str, ...], names: tuple[str, ...], min_score: float) -> np.ndarray:
    top_names = np.asarray(labels)[scored.audioset_top]
    return np.isin(top_names, names) & (scored.audioset_top_score >= min_score)


def fit_detection(
    pos: Scored, oof: np.ndarray, targets: np.ndarray, neg: Scored, labels: tuple[str, ...], max_rate: float
) -> tuple[ThresholdFit, tuple[str, ...], float]:
    """Thresholds and the AudioSet abstention (labels, min score) with the best recall whose
    share of negatives detecting anything is at most ``max_rate``."""
    best: tuple[ThresholdFit, tuple[str, ...], float] | None = None
    for min_score in ABSTAIN_MIN_SCORES:
        names = abstain_set(pos, neg, labels, min_score)
        veto = np.isin(np.asarray(labels)[neg.audioset_top], names) & (neg.audioset_top_score >= min_score)
        pos_veto = np.isin(np.asarray(labels)[pos.audioset_top], names) & (
            pos.audioset_top_score >= min_score
        )
        kept = neg.probs[~veto]
        rate_kept = max_rate * len(neg.probs) / max(len(kept), 1)
        fit = fit_thresholds(np.where(pos_veto[:, None], -1.0, oof), targets, kept, rate_kept)
        overall = replace(
            fit, negative_rate=fit.negative_rate * len(kept) / len(neg.probs), n_negatives=len(neg.probs)
        )
        candidate = (overall, names, min_score)
        if best is None or (overall.negative_rate <= max_rate, overall.positive_recall) > (
            best[0].negative_rate <= max_rate,
            best[0].positive_recall,
        ):
            best = candidate
    if best is None:
        raise ValueError("no abstention candidates")
    return best


def fit_and_store(
    model_dir: Path, oof_path: Path, max_negative_rate: float, seeds: tuple[int, ...] = FIT_SEEDS
) -> ThresholdFit:
    """Fit thresholds and the AudioSet abstention for the checkpoint in ``model_dir``; write them
    into its card. Negatives are scored in fp32 and bf16 (a negative must stay silent in both)."""
    from training.data import SHARED_DATA, load_dataset
    from training.yamnet_features import load_waveforms

    model, card = load_checkpoint(model_dir)
    oof = np.load(oof_path)
    negatives = negative_waveforms(seeds)
    neg = score_waveforms(model, negatives, Precision.FP32) + score_waveforms(
        model, negatives, Precision.BF16
    )
    pos = score_waveforms(model, load_waveforms(load_dataset(SHARED_DATA / "esc50").clips), Precision.BF16)
    fit, names, min_score = fit_detection(
        pos, oof["scores"], oof["targets"], neg, card.audioset_labels, max_negative_rate
    )
    how = {
        **{k: v for k, v in asdict(fit).items() if k != "thresholds"},
        "positives": f"out-of-fold ESC-50 scores ({oof_path.name}: each clip scored by the CV model "
        "that did not train on its fold); their AudioSet top labels from this model",
        "negatives": f"bench/open_set.py seeds {','.join(map(str, seeds))}, {len(negatives)} clips scored "
        f"by this model in fp32 and bf16 (the open-set benchmark uses seed {CHECK_SEED})",
        "max_negative_rate": max_negative_rate,
        "rule": "detected_c = score_c >= threshold_c, unless the top AudioSet label is in abstain_audioset "
        "with at least abstain_min_score; thresholds: from a quantile of each class's positives (at "
        f"least {MIN_THRESHOLD}), raised "
        "greedily (most negatives silenced per positive lost) until at most max_negative_rate of the "
        "negatives detect anything",
        "command": f"python -m training.thresholds --model {model_dir} --oof {oof_path} "
        f"--seeds {','.join(map(str, seeds))} --max-negative-rate {max_negative_rate}",
    }
    evaluation = {**card.evaluation, "thresholds_fit": how}
    stamped: ModelCard = replace(
        card,
        thresholds=fit.thresholds,
        abstain_audioset=names,
        abstain_min_score=min_score,
        evaluation=evaluation,
    )
    save_checkpoint(model_dir, model, stamped)
    return fit


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
    fit = fit_and_store(args.model, args.oof, args.max_negative_rate, seeds)
    print(json.dumps({k: v for k, v in asdict(fit).items() if k != "thresholds"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
