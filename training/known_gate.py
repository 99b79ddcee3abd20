"""Fitting the known-sound gate (``audify_batch/model/known_gate.py``): a logistic regression
over the log of YAMNet's 521 AudioSet scores that tells the model's own sounds (ESC-50 clips)
from generated sounds that are none of them (bench/open_set.py).

The AudioSet head is YAMNet's, frozen, so the same for every CV model: the gate's out-of-fold
figures hold out the gate's own training data. Each ESC-50 clip's probability comes from a gate
fitted without its fold; each negative's from a gate fitted without its open-set seed; each
kind of negative (tones, speech, ...) is also held out whole once, to show how the gate does on
sounds of a kind it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from audify_batch.model.known_gate import KnownSoundGate

L2_C = 0.1  # inverse L2 strength on standardised features, as scikit-learn's C
FLOOR_SCORE = KnownSoundGate.floor_score
MAX_ITERATIONS = 500


def gate_features(audioset_scores: np.ndarray, floor_score: float = FLOOR_SCORE) -> np.ndarray:
    """(N, n_audioset) scores -> the gate's features, as KnownSoundGate.known_probability reads them."""
    return np.log(np.clip(audioset_scores.astype(np.float64), floor_score, None))


@dataclass(frozen=True, eq=False)
class LinearFit:
    """p = sigmoid(features @ weights + bias), on raw (unstandardised) features."""

    weights: np.ndarray
    bias: float

    def probability(self, features: np.ndarray) -> np.ndarray:
        logits = np.clip(features @ self.weights + self.bias, -60.0, 60.0)
        return 1.0 / (1.0 + np.exp(-logits))

    def as_gate(self, min_probability: float) -> KnownSoundGate:
        return KnownSoundGate(
            weights=tuple(round(float(w), 7) for w in self.weights),
            bias=round(self.bias, 7),
            min_probability=min_probability,
            floor_score=FLOOR_SCORE,
        )


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2_c: float = L2_C) -> LinearFit:
    """Class-balanced, L2-regularised logistic regression (LBFGS in float64). Features are
    standardised for the fit and the scaling is folded back into the weights."""
    if l2_c <= 0:
        raise ValueError(f"l2_c must be positive, got {l2_c}")
    positive = labels.astype(bool)
    if positive.all() or not positive.any():
        raise ValueError("the gate needs both known sounds and other sounds to fit")
    x = torch.from_numpy(np.asarray(features, dtype=np.float64))
    y = torch.from_numpy(positive.astype(np.float64))
    sample_weight = torch.where(y > 0, 0.5 / positive.sum(), 0.5 / (~positive).sum())
    mean, scale = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / scale
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], max_iter=MAX_ITERATIONS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        losses = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, reduction="none")
        loss = (sample_weight * losses).sum() + (w**2).sum() / (2 * l2_c * len(x))
        loss.backward()
        return loss

    optimiser.step(closure)
    raw = (w / scale).detach()
    return LinearFit(raw.numpy().copy(), float((b - (raw * mean).sum()).detach()))


def fit_gate(known: np.ndarray, other: np.ndarray, l2_c: float = L2_C) -> LinearFit:
    """Known sounds' features against other sounds' features."""
    labels = np.r_[np.ones(len(known)), np.zeros(len(other))]
    return fit_logistic(np.concatenate([known, other]), labels, l2_c)


@dataclass(frozen=True)
class GateHoldout:
    """Gate probabilities of the data it is fitted on, each from a gate that did not see it."""

    known: np.ndarray  # per ESC-50 clip, from a gate fitted without its fold
    other: np.ndarray  # per negative, from a gate fitted without its group (open-set seed)


def held_out_probabilities(
    known: np.ndarray,
    known_folds: np.ndarray,
    other: np.ndarray,
    other_groups: np.ndarray,
    l2_c: float = L2_C,
) -> GateHoldout:
    known_p, other_p = np.zeros(len(known)), np.zeros(len(other))
    for fold in np.unique(known_folds):
        held = known_folds == fold
        known_p[held] = fit_gate(known[~held], other, l2_c).probability(known[held])
    for group in np.unique(other_groups):
        held = other_groups == group
        if held.all():
            raise ValueError("hold out a group of negatives: fit on more than one open-set seed")
        other_p[held] = fit_gate(known, other[~held], l2_c).probability(other[held])
    return GateHoldout(known_p, other_p)


def unseen_kind_rates(
    known: np.ndarray, other: np.ndarray, other_kinds: np.ndarray, min_probability: float, l2_c: float = L2_C
) -> dict[str, float]:
    """Per kind of negative: the share of it a gate fitted without that kind silences."""
    rates = {}
    for kind in sorted(set(other_kinds.tolist())):
        held = other_kinds == kind
        probability = fit_gate(known, other[~held], l2_c).probability(other[held])
        rates[str(kind)] = round(float(np.mean(probability < min_probability)), 4)
    return rates
