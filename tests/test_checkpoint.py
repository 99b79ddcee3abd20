from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from audify_batch.model.checkpoint import (
    CARD_FILE,
    DEFAULT_MODEL_DIR,
    WEIGHTS_FILE,
    CheckpointError,
    ModelCard,
    build_classifier,
    load_checkpoint,
    save_checkpoint,
)
from audify_batch.model.features import FrontendConfig
from audify_batch.model.network import ArchConfig

SMALL = ArchConfig(n_classes=3, stem_channels=4, stage_channels=(4, 8), blocks_per_stage=(1, 1))


def small_card(arch: ArchConfig = SMALL) -> ModelCard:
    n_mels = FrontendConfig().n_mels
    return ModelCard(
        name="test-model",
        version="0.0.1",
        labels=tuple(f"class{i}" for i in range(arch.n_classes)),
        frontend=FrontendConfig(),
        arch=arch,
        norm_mean_db=tuple([-20.0] * n_mels),
        norm_std_db=tuple([10.0] * n_mels),
        training={"command": "test"},
    )


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    card = small_card()
    model = build_classifier(card).eval()
    saved = save_checkpoint(tmp_path, model, card)
    loaded, loaded_card = load_checkpoint(tmp_path)
    assert loaded_card == saved
    assert len(saved.weights_sha256) == 64
    x = torch.randn(2, 16_000)
    with torch.inference_mode():
        torch.testing.assert_close(model(x).logits, loaded(x).logits)


def test_card_architecture_disagreeing_with_weights_is_a_clear_error(tmp_path: Path) -> None:
    card = small_card()
    save_checkpoint(tmp_path, build_classifier(card), card)
    data = json.loads((tmp_path / CARD_FILE).read_text())
    data["arch"]["stage_channels"] = [4, 16]
    (tmp_path / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"weights do not match the model card.*shape of"):
        load_checkpoint(tmp_path)


def test_replaced_weights_fail_the_hash_check(tmp_path: Path) -> None:
    card = small_card()
    save_checkpoint(tmp_path, build_classifier(card), card)
    other = tmp_path / "other"
    save_checkpoint(other, build_classifier(card), replace(card, version="9"))
    (tmp_path / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(tmp_path)


def test_label_count_must_match_head() -> None:
    with pytest.raises(CheckpointError, match="labels"):
        replace(small_card(), labels=("a", "b"))


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no model card"):
        load_checkpoint(tmp_path)


def test_checkpoints_are_not_pickles(tmp_path: Path) -> None:
    card = small_card()
    save_checkpoint(tmp_path, build_classifier(card), card)
    head = (tmp_path / WEIGHTS_FILE).read_bytes()[:16]
    assert not head.startswith(b"\x80")  # pickle protocol marker
    assert not head.startswith(b"PK")  # torch.save zip archive


def test_shipped_default_model_loads_with_a_complete_card() -> None:
    model, card = load_checkpoint(DEFAULT_MODEL_DIR)
    assert card.arch.n_classes == len(card.labels) == 50
    assert "CC BY-NC" in card.training["licence"]
    for key in ("command", "git_commit", "recipe", "data"):
        assert card.training[key]
    folds = card.evaluation["cv_fold_accuracy"]
    assert sorted(folds) == ["1", "2", "3", "4", "5"]
    assert "cv_mean_accuracy" in card.evaluation and "cv_std_accuracy" in card.evaluation
    assert "fold4_44k_accuracy" in card.evaluation
    assert (DEFAULT_MODEL_DIR / WEIGHTS_FILE).stat().st_size < 20 * 1024 * 1024
    assert not model.training
