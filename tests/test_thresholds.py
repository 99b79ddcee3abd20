"""Fitting the thresholds of ``detected`` (training/thresholds.py) on synthetic scores."""

from __future__ import annotations

import numpy as np
import pytest

from training.thresholds import (
    CHECK_SEED,
    Scored,
    abstain_set,
    detection_rates,
    fit_detection,
    fit_thresholds,
    negative_waveforms,
)


def synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positives peak at their class; negatives are diffuse, a few with one high class."""
    rng = np.random.default_rng(seed)
    n_classes, n_pos, n_neg = 5, 500, 200
    targets = rng.integers(0, n_classes, n_pos)
    pos = rng.uniform(0, 0.2, (n_pos, n_classes))
    pos[np.arange(n_pos), targets] = rng.uniform(0.3, 1.0, n_pos)
    neg = rng.uniform(0, 0.35, (n_neg, n_classes))
    neg[:10, 2] = 0.9  # negatives that look like class 2
    return pos, targets, neg


def test_the_fit_keeps_negatives_under_the_limit_and_most_positives() -> None:
    pos, targets, neg = synthetic()
    fit = fit_thresholds(pos, targets, neg, max_negative_rate=0.05)
    recall, empty = detection_rates(np.asarray(fit.thresholds), pos, targets, neg)
    assert fit.negative_rate <= 0.05 and empty >= 0.95
    assert recall == fit.positive_recall >= 0.85
    assert fit.thresholds[2] <= 0.9  # 10 of 200 negatives at 0.9: raising past them costs recall


def test_the_fit_is_deterministic() -> None:
    pos, targets, neg = synthetic()
    assert fit_thresholds(pos, targets, neg) == fit_thresholds(pos, targets, neg)


def test_audioset_evidence_silences_what_no_threshold_can() -> None:
    pos, targets, neg = synthetic()
    neg[:60, 1] = 0.95  # sounds the ESC-50 head calls class 1 as confidently as real ones ...
    labels = ("Dog", "Speech", "Sine wave")
    neg_top = np.full(len(neg), 1)
    neg_top[:60] = 2  # ... but AudioSet calls them sine waves, which no positive is
    negatives = Scored(neg, neg_top, np.full(len(neg), 0.8))
    positives = Scored(pos, np.zeros(len(pos), int), np.full(len(pos), 0.8))
    assert abstain_set(positives, negatives, labels, 0.5) == ("Speech", "Sine wave")
    fit, names, _ = fit_detection(positives, pos, targets, negatives, labels, 0.05)
    assert "Sine wave" in names and fit.negative_rate <= 0.05 and fit.positive_recall >= 0.85


def test_thresholds_are_never_fitted_on_the_check_sets_seed() -> None:
    for seeds in ((CHECK_SEED,), (1, CHECK_SEED), ()):
        with pytest.raises(ValueError, match="other than"):
            negative_waveforms(seeds)
    with pytest.raises(ValueError, match="repeat"):
        negative_waveforms((1, 2, 1))
