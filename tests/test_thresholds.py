"""Fitting ``detected`` (training/thresholds.py) and its known-sound gate (training/known_gate.py) on
synthetic scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audify_batch.model.known_gate import KnownSoundGate
from training.known_gate import (
    GateHoldout,
    fit_gate,
    fit_logistic,
    gate_features,
    held_out_probabilities,
    unseen_kind_rates,
)
from training.thresholds import (
    CHECK_SEED,
    detection_rates,
    fit_gated_detection,
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


def test_the_gate_silences_what_no_threshold_can() -> None:
    pos, targets, neg = synthetic()
    neg[:60, 1] = 0.95  # sounds the ESC-50 head calls class 1 as confidently as real ones ...
    known = np.full(len(pos), 0.9)
    other = np.full(len(neg), 0.6)
    other[:60] = 0.02  # ... but the gate says no known sound is there
    gated = fit_gated_detection(pos, targets, neg, GateHoldout(known, other), max_rate=0.05)
    assert gated.known_silenced == 0.0 and gated.other_silenced == 60 / len(neg)
    assert gated.thresholds.negative_rate <= 0.05 and gated.thresholds.positive_recall >= 0.85
    assert gated.thresholds.thresholds[1] < 0.95  # the gate, not the threshold, silenced them
    ungated = fit_thresholds(pos, targets, neg, max_negative_rate=0.05)
    assert gated.thresholds.positive_recall > ungated.positive_recall


def test_the_gate_cut_trades_the_clips_it_silences_against_the_negatives() -> None:
    pos, targets, neg = synthetic()
    neg[:60, 1] = 0.95
    known = np.full(len(pos), 0.9)
    known[:25] = 0.15  # 5 % of the clips: a cut of 0.2 or more silences them ...
    other = np.full(len(neg), 0.6)
    other[:60] = 0.15  # ... and the look-alikes, which a cut of 0.1 lets through to the thresholds
    gated = fit_gated_detection(pos, targets, neg, GateHoldout(known, other), max_rate=0.05)
    assert gated.min_probability == 0.2  # 0.3 and 0.5 silence no more: the lowest of them
    assert gated.known_silenced == 0.05 and gated.other_silenced == 0.3
    assert gated.thresholds.positive_recall <= 0.95 and gated.thresholds.negative_rate <= 0.05
    _, _, plain = synthetic()  # no look-alikes: the thresholds alone keep the negatives quiet ...
    low = fit_gated_detection(pos, targets, plain, GateHoldout(known, np.full(len(plain), 0.6)), 0.05)
    assert low.min_probability == 0.1 and low.known_silenced == 0.0  # ... so no clip is given up
    assert low.thresholds.positive_recall > gated.thresholds.positive_recall


def clusters(n: int = 300, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """AudioSet-like scores: known sounds high on the first 3 classes, others on the rest."""
    rng = np.random.default_rng(seed)
    known = rng.uniform(0.0, 0.1, (n, dim))
    known[:, :3] = rng.uniform(0.3, 0.9, (n, 3))
    other = rng.uniform(0.0, 0.1, (n // 2, dim))
    other[:, 3:] = rng.uniform(0.3, 0.9, (n // 2, dim - 3))
    return gate_features(known), gate_features(other)


def test_the_gate_fit_separates_two_clusters_and_reads_raw_scores() -> None:
    known, other = clusters()
    fit = fit_gate(known, other)
    assert np.mean(fit.probability(known) > 0.5) > 0.99 and np.mean(fit.probability(other) < 0.5) > 0.99
    gate = fit.as_gate(min_probability=0.5)
    test_known, test_other = clusters(seed=1)
    raw = torch.from_numpy(np.exp(np.concatenate([test_known, test_other])))
    np.testing.assert_allclose(  # the standardisation is folded into the stored weights
        gate.known_probability(raw).numpy(),
        fit.probability(np.concatenate([test_known, test_other])),
        atol=1e-4,
    )
    assert gate.passes(raw).numpy().tolist() == [True] * len(test_known) + [False] * len(test_other)
    np.testing.assert_allclose(  # bf16 scores, as autocast gives them, read the same
        gate.known_probability(raw.bfloat16()).numpy(), gate.known_probability(raw).numpy(), atol=0.02
    )


def test_the_folded_weights_equal_a_fit_on_standardised_features() -> None:
    known, other = clusters()
    features = np.concatenate([known, other])
    mean, scale = features.mean(0), features.std(0, ddof=1) + 1e-6
    on_raw = fit_gate(known, other)
    on_standardised = fit_gate((known - mean) / scale, (other - mean) / scale)
    np.testing.assert_allclose(
        on_raw.probability(features), on_standardised.probability((features - mean) / scale), atol=1e-4
    )


def test_the_gate_fit_needs_both_sides_and_a_positive_penalty() -> None:
    known, other = clusters()
    with pytest.raises(ValueError, match="both"):
        fit_logistic(known, np.ones(len(known)))
    with pytest.raises(ValueError, match="l2_c"):
        fit_gate(known, other, l2_c=0.0)


def test_held_out_probabilities_come_from_gates_that_did_not_see_the_clip() -> None:
    known, other = clusters()
    folds, groups = np.arange(len(known)) % 5, np.arange(len(other)) % 3
    held = held_out_probabilities(known, folds, other, groups)
    assert held.known.shape == (len(known),) and held.other.shape == (len(other),)
    assert np.mean(held.known > 0.5) > 0.95 and np.mean(held.other < 0.5) > 0.95
    full = fit_gate(known, other).probability(known)
    assert not np.allclose(held.known, full)  # each fold's gate is another fit
    with pytest.raises(ValueError, match="more than one"):
        held_out_probabilities(known, folds, other, np.zeros(len(other)))


def test_unseen_kinds_are_rated_by_a_gate_fitted_without_them() -> None:
    known, other = clusters()
    kinds = np.where(np.arange(len(other)) % 2 == 0, "tone", "hum")
    lookalike = known[: len(other) // 2]  # a kind of negative that looks known: nothing kills it
    rates = unseen_kind_rates(
        known, np.concatenate([other, lookalike]), np.r_[kinds, ["lookalike"] * len(lookalike)], 0.5
    )
    assert rates["tone"] > 0.95 and rates["hum"] > 0.95 and rates["lookalike"] < 0.1


def test_a_gate_reads_as_many_scores_as_it_has_weights() -> None:
    gate = KnownSoundGate(weights=(1.0, -1.0), bias=0.0, min_probability=0.5)
    with pytest.raises(ValueError, match="reads 2"):
        gate.known_probability(torch.zeros(1, 3))
    bad_values = ({"min_probability": 1.0}, {"floor_score": 0.0}, {"weights": ()}, {"bias": float("nan")})
    for bad in (*bad_values, {"weights": (float("inf"),)}):
        with pytest.raises(ValueError):
            KnownSoundGate(**{"weights": (1.0,), "bias": 0.0, "min_probability": 0.5, **bad})  # type: ignore[arg-type]


def test_thresholds_are_never_fitted_on_the_check_sets_seed() -> None:
    for seeds in ((CHECK_SEED,), (1, CHECK_SEED), ()):
        with pytest.raises(ValueError, match="other than"):
            negative_waveforms(seeds)
    with pytest.raises(ValueError, match="repeat"):
        negative_waveforms((1, 2, 1))
