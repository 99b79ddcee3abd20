"""An ensemble of ESC-50 branches over one shared trunk: merged from separately trained members,
it scores what the members' averaged scores say, and its CV is their averaged out-of-fold scores."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from audify_batch.model.checkpoint import load_checkpoint, save_checkpoint
from audify_batch.model.families import YamnetArch
from audify_batch.model.inference import Precision, score_batch
from audify_batch.model.yamnet import load_yamnet
from audify_batch.model.yamnet_classifier import YamnetClassifier
from audify_batch.report.explain import Window, explain_window
from tests.test_yamnet_model import LABELS, yamnet_card
from training.yamnet_ensemble import ensemble_cv, merge


def _member(directory: Path, seed: int, activation: str) -> Path:
    """YAMNet with two tuned blocks nudged by ``seed`` and a random head: one trained member."""
    torch.manual_seed(seed)
    arch = YamnetArch(n_classes=len(LABELS), tuned_blocks=2, esc_activation=activation)
    model = YamnetClassifier(arch)
    model.load_yamnet(load_yamnet())
    with torch.no_grad():
        for parameter in model.net.tuned.parameters():
            parameter.mul_(1 + 0.2 * torch.randn_like(parameter))
    save_checkpoint(directory, model.eval(), yamnet_card(arch))
    return directory


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_a_merged_model_scores_the_mean_of_its_members(tmp_path: Path, activation: str) -> None:
    members = [_member(tmp_path / f"m{i}", seed=i, activation=activation) for i in range(3)]
    merged, _ = merge(members)
    assert merged.arch.esc_branches == 3
    waves = 0.1 * torch.randn(4, 80_000, generator=torch.Generator().manual_seed(5))
    each = [score_batch(load_checkpoint(m)[0], waves, Precision.FP32) for m in members]
    ours = score_batch(merged, waves, Precision.FP32)
    expected = torch.stack([s.probs for s in each]).mean(dim=0)
    assert torch.allclose(ours.probs, expected, atol=1e-5)
    assert not torch.allclose(each[0].probs, each[1].probs, atol=1e-3)  # the members do differ
    assert torch.allclose(ours.embeddings, each[0].embeddings, atol=1e-5)  # the first member's space
    assert ours.audioset is not None and each[0].audioset is not None
    assert torch.allclose(ours.audioset, each[0].audioset, atol=1e-6)  # YAMNet's, untouched
    save_checkpoint(tmp_path / "merged", merged, yamnet_card(merged.arch))
    loaded, card = load_checkpoint(tmp_path / "merged")
    assert card.arch == merged.arch
    assert torch.allclose(score_batch(loaded, waves, Precision.FP32).probs, ours.probs, atol=1e-6)


def test_members_must_share_the_frozen_trunk(tmp_path: Path) -> None:
    first = _member(tmp_path / "a", seed=0, activation="softmax")
    other, card = load_checkpoint(_member(tmp_path / "b", seed=1, activation="softmax"))
    with torch.no_grad():
        other.net.backbone.blocks[0].pointwise.weight.add_(0.01)
    save_checkpoint(tmp_path / "b", other, card)
    with pytest.raises(SystemExit, match="frozen backbone"):
        merge([first, tmp_path / "b"])


def test_members_must_rank_the_same_labels_through_the_same_frontend(tmp_path: Path) -> None:
    first = _member(tmp_path / "a", seed=0, activation="softmax")
    other, card = load_checkpoint(_member(tmp_path / "b", seed=1, activation="softmax"))
    save_checkpoint(tmp_path / "b", other, replace(card, labels=tuple(reversed(card.labels))))
    with pytest.raises(SystemExit, match="same labels"):
        merge([first, tmp_path / "b"])
    with torch.no_grad():
        next(iter(other.frontend.buffers())).mul_(1.01)
    save_checkpoint(tmp_path / "c", other, card)
    with pytest.raises(SystemExit, match="frontend"):
        merge([first, tmp_path / "c"])


def _cv_dir(
    directory: Path, scores: np.ndarray, targets: np.ndarray, folds: np.ndarray, activation: str
) -> Path:
    directory.mkdir()
    np.savez(directory / "oof.npz", scores=scores, targets=targets, folds=folds, activation=activation)
    (directory / "cv_results.json").write_text(json.dumps({"mean": 0.0}))
    return directory


def test_the_ensemble_cv_refuses_members_scored_with_different_activations(tmp_path: Path) -> None:
    targets, folds, scores = np.array([0, 1]), np.array([1, 2]), np.array([[0.9, 0.1], [0.2, 0.8]])
    dirs = [_cv_dir(tmp_path / a, scores, targets, folds, a) for a in ("softmax", "sigmoid")]
    with pytest.raises(SystemExit, match="activations"):
        ensemble_cv(dirs, tmp_path / "ens")


def test_the_ensemble_cv_averages_the_members_out_of_fold_scores(tmp_path: Path) -> None:
    targets, folds = np.array([0, 1, 0, 1]), np.array([1, 1, 2, 2])
    member_scores = [
        np.array([[0.9, 0.1], [0.6, 0.4], [0.4, 0.6], [0.2, 0.8]]),  # right on 3 of 4
        np.array([[0.3, 0.7], [0.1, 0.9], [0.8, 0.2], [0.6, 0.4]]),  # right on 2 of 4
    ]
    cv_dirs = [
        _cv_dir(tmp_path / f"cv{index}", scores, targets, folds, "softmax")
        for index, scores in enumerate(member_scores)
    ]
    ensemble_cv(cv_dirs, tmp_path / "ens")
    results = json.loads((tmp_path / "ens" / "cv_results.json").read_text())
    # mean scores: [0.6 0.4] right, [0.35 0.65] right, [0.6 0.4] right, [0.4 0.6] right
    assert results["folds"] == {"1": 1.0, "2": 1.0} and results["mean"] == 1.0
    oof = np.load(tmp_path / "ens" / "oof.npz")
    assert np.allclose(oof["scores"], np.mean(member_scores, axis=0))


def test_grad_cam_of_an_ensemble_follows_its_first_branch_raw_logit(tmp_path: Path) -> None:
    """The averaged logits are log-probabilities, whose gradient vanishes as a clip grows certain;
    Grad-CAM follows the first branch's own logit, so an ensemble of one member twice draws that
    member's map."""
    first = _member(tmp_path / "a", seed=0, activation="softmax")
    merged, _ = merge([first, _member(tmp_path / "b", seed=1, activation="softmax")])
    alone, card = load_checkpoint(first)
    merged.net.extra_tuned[0].load_state_dict(alone.net.tuned.state_dict())
    merged.net.extra_heads[0].load_state_dict(alone.net.head.state_dict())
    rng = np.random.default_rng(3)
    wave = (0.1 * rng.standard_normal(80_000) + 0.3 * np.sin(np.arange(80_000) * 0.2)).astype(np.float32)
    window = Window("mem://clip.wav", 0.0, 5.0, 5.0, wave, 16_000)
    ours, theirs = explain_window(merged, card, window, k=3), explain_window(alone, card, window, k=3)
    assert ours.labels == theirs.labels
    assert np.allclose(ours.confidences, theirs.confidences, atol=1e-5)
    assert np.allclose(ours.gradcam, theirs.gradcam, atol=1e-4) and ours.gradcam.max() == 1.0
