from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from audify_batch.model.checkpoint import load_checkpoint
from training.augment import (
    mixup,
    random_freq_shift,
    random_stretch_crop,
    random_time_shift,
    smooth_one_hot,
    spec_augment,
)
from training.data import DatasetError, load_dataset
from training.recipe import TrainConfig
from training.train import _record_fold, main


def smoke_cv_args(data: Path, out: Path, epochs: int = 2) -> list[str]:
    return [
        "cv",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--limit-clips",
        "60",
        "--folds",
        "1",
    ]


def file_states(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (ns)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_two_epoch_smoke_run_writes_checkpoint_and_logs(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cv"
    assert main(smoke_cv_args(shared_data / "esc50", out)) == 0
    results = json.loads((out / "cv_results.json").read_text())
    assert list(results["folds"]) == ["1"] and 0.0 <= results["folds"]["1"] <= 1.0
    assert results["recipe"]["epochs"] == 2
    _model, card = load_checkpoint(out / "fold1")
    assert card.training["training_folds"] == [2, 3, 4, 5]
    assert card.training["recipe"] == results["recipe"]
    assert card.evaluation == {"held_out_fold": 1}
    assert card.arch.pooling == "freq_mean_time_max_mean"  # the training default
    assert card.training["recipe"]["max_time_stretch"] > 0 and card.training["recipe"]["freq_shift_bins"] > 0
    assert "training.train cv" in card.training["command"]
    assert any((out / "fold1" / "tb").iterdir())  # TensorBoard events
    accuracy = results["folds"]["1"]
    before = file_states(out)
    capsys.readouterr()

    # A rerun of the same recipe skips the finished fold: nothing is trained or rewritten.
    assert main(smoke_cv_args(shared_data / "esc50", out)) == 0
    assert f"fold 1: done before, {accuracy:.4f}" in capsys.readouterr().out
    assert file_states(out) == before

    # A rerun with another recipe into the same OUT is refused before any training.
    with pytest.raises(SystemExit, match="another recipe"):
        main(smoke_cv_args(shared_data / "esc50", out, epochs=3))
    assert file_states(out) == before


def test_missing_dataset_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cv", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "dataset folder not found" in err and "Traceback" not in err


def test_incomplete_dataset_is_a_clear_error(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "esc50"
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    lines = (shared_data / "esc50" / "meta" / "esc50.csv").read_text().splitlines()
    (root / "meta" / "esc50.csv").write_text("\n".join(lines[:11]) + "\n")
    for line in lines[1:6]:
        name = line.split(",")[0]
        shutil.copy(shared_data / "esc50" / "audio" / name, root / "audio" / name)
    with pytest.raises(DatasetError, match=r"5 of 10 audio files .* are missing"):
        load_dataset(root)


def test_augmentations_keep_shapes_and_are_seeded() -> None:
    x = torch.randn(8, 64, 100)
    y = smooth_one_hot(torch.arange(8) % 5, 5, 0.1)
    torch.testing.assert_close(y.sum(1), torch.ones(8))
    outs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(3)
        xm, ym = mixup(random_time_shift(x, gen), y, 0.4, gen)
        outs.append((spec_augment(xm, gen), ym))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    assert outs[0][0].shape == x.shape and outs[0][1].shape == y.shape
    torch.testing.assert_close(outs[0][1].sum(1), torch.ones(8))
    masked = spec_augment(torch.ones(4, 64, 100), torch.Generator().manual_seed(0), 2, 8, 2, 25)
    assert (masked == 0).any() and (masked == 1).any()


def test_time_shift_is_a_rotation() -> None:
    x = torch.arange(10.0).view(1, 1, 10).expand(3, 2, 10).contiguous()
    shifted = random_time_shift(x, torch.Generator().manual_seed(1))
    for row in shifted:
        assert sorted(row[0].tolist()) == list(range(10))
        assert torch.equal(row[0], row[1])


def test_stretch_crop_is_seeded_and_keeps_order_of_frames() -> None:
    x = torch.arange(100.0).view(1, 1, 100).expand(4, 3, 100).contiguous()
    first = random_stretch_crop(x, 70, 0.25, torch.Generator().manual_seed(5))
    again = random_stretch_crop(x, 70, 0.25, torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, again)
    assert first.shape == (4, 3, 70)
    for row in first:
        assert torch.equal(row[0], row[2])
        steps = row[0].diff()
        wraps = steps < 0  # at most one wrap-around from the end back to the start
        assert int(wraps.sum()) <= 1
        assert steps[~wraps].min() >= 0  # monotone between wraps
        assert 0.8 - 1e-4 <= steps[~wraps].median() <= 1.25 + 1e-4  # one frame -> 0.8 to 1.25


def test_freq_shift_moves_bands_and_fills_with_zero() -> None:
    x = torch.arange(1.0, 9.0).view(1, 8, 1).expand(50, 8, 3).contiguous()
    shifted = random_freq_shift(x, 2, torch.Generator().manual_seed(0))
    for row in shifted:
        column = row[:, 0]
        kept = column[column != 0]
        assert kept.diff().eq(1).all()  # bands stay in order, each moved by the same amount
        assert 6 <= len(kept) <= 8
        assert torch.equal(row[:, 0], row[:, 2])
    assert len({tuple(row[:, 0].tolist()) for row in shifted}) > 1


def test_folds_run_as_separate_processes_share_one_results_file(tmp_path: Path) -> None:
    results_path = tmp_path / "cv_results.json"
    cfg = TrainConfig(epochs=3)
    _record_fold(results_path, 2, 0.75, cfg)
    _record_fold(results_path, 1, 0.5, cfg)  # a second process that started before fold 2 ended
    assert json.loads(results_path.read_text())["folds"] == {"1": 0.5, "2": 0.75}
    with pytest.raises(SystemExit, match="another recipe"):
        _record_fold(results_path, 3, 0.6, TrainConfig(epochs=4))
