"""A custom head's arithmetic: L2-regularised logistic regression on stored embeddings, and its
stratified cross-validation (precision and recall at 0.5, average precision).

Features are standardised for the fit; the weights are then folded back so that the head scores
raw embeddings with one matrix-vector product: ``sigmoid(x @ weight + bias)``. Classes are
weighted to count equally, so a score of 0.5 sits between them whatever their sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

L2_DEFAULT = 1e-2  # on standardised features, per example (the loss is a weighted mean)
MAX_ITER = 200  # LBFGS iterations
MIN_PER_CLASS = 5  # positives and negatives needed to train and cross-validate


@dataclass(frozen=True)
class LinearHead:
    """Scores raw embeddings: ``sigmoid(x @ weight + bias)``, float32."""

    weight: np.ndarray  # (D,) float32
    bias: float

    def __post_init__(self) -> None:
        if self.weight.ndim != 1 or self.weight.dtype != np.float32:
            raise ValueError(
                f"a head's weight is one float32 vector, got {self.weight.dtype} {self.weight.shape}"
            )

    @property
    def dim(self) -> int:
        return int(self.weight.shape[0])

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(N,) float32 scores of (N, D) float32 embeddings."""
        return self.scores_of_products(x @ self.weight)

    def scores_of_products(self, logits: np.ndarray) -> np.ndarray:
        """(N,) float32 scores from the (N,) float32 products ``x @ weight`` (overwritten)."""
        logits += np.float32(self.bias)
        np.clip(logits, -80.0, 80.0, out=logits)  # exp stays finite in float32
        np.negative(logits, out=logits)
        np.exp(logits, out=logits)
        logits += np.float32(1.0)
        return np.reciprocal(logits, out=logits)


@dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold predictions of a k-fold stratified cross-validation, pooled."""

    folds: int
    n_positive: int
    n_negative: int
    precision: float  # at score >= 0.5; 0 when nothing reaches it
    recall: float
    average_precision: float


def check_classes(y: np.ndarray, min_per_class: int = MIN_PER_CLASS) -> None:
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos < min_per_class or n_neg < min_per_class:
        raise ValueError(
            f"a head needs at least {min_per_class} positive and {min_per_class} negative examples, "
            f"got {n_pos} and {n_neg}: review more segments"
        )


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = L2_DEFAULT, max_iter: int = MAX_ITER
) -> LinearHead:
    """Class-balanced, L2-regularised logistic regression of ``y`` (0/1) on ``x`` (N, D), by LBFGS."""
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x is (N, D) and y (N,), got {x.shape} and {y.shape}")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64) + 1e-6
    features = torch.from_numpy(((x - mean) / std).astype(np.float32))
    target = torch.from_numpy(y.astype(np.float32))
    n_pos = float(target.sum())
    n_neg = len(target) - n_pos
    sample_weight = torch.where(target > 0, 0.5 / max(n_pos, 1.0), 0.5 / max(n_neg, 1.0))
    weight = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = features @ weight + bias
        losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss = (losses * sample_weight).sum() + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    w = weight.detach().double().numpy() / std
    b = float(bias.detach().double().numpy()[0]) - float(w @ mean)
    return LinearHead(w.astype(np.float32), b)


def stratified_folds(y: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Fold number per example, positives and negatives dealt out separately in a seeded order."""
    fold = np.empty(len(y), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for value in (0, 1):
        members = np.flatnonzero(y == value)
        fold[rng.permutation(members)] = np.arange(len(members)) % folds
    return fold


def average_precision(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean over positives of the precision among examples scoring at least as high."""
    order = np.argsort(-scores, kind="stable")
    hits = y[order].astype(np.float64)
    if hits.sum() == 0:
        return 0.0
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at * hits).sum() / hits.sum())


def cross_validate(
    x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0, l2: float = L2_DEFAULT
) -> CrossValidation:
    """k-fold stratified cross-validation (k at most the size of the smaller class)."""
    check_classes(y)
    n_pos = int(y.sum())
    k = min(folds, n_pos, len(y) - n_pos)
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    fold = stratified_folds(y, k, seed)
    predicted = np.empty(len(y), dtype=np.float32)
    for i in range(k):
        held = fold == i
        head = fit_logistic(x[~held], y[~held], l2)
        predicted[held] = head.scores(np.ascontiguousarray(x[held], dtype=np.float32))
    called = predicted >= 0.5
    true_pos = int((called & (y == 1)).sum())
    return CrossValidation(
        folds=k,
        n_positive=n_pos,
        n_negative=len(y) - n_pos,
        precision=true_pos / int(called.sum()) if called.any() else 0.0,
        recall=true_pos / n_pos,
        average_precision=average_precision(predicted, y),
    )
