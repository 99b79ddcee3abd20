"""A calibrated thresholds file (audify calibrate --save) changes `detected`, in label and classify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from audify_batch.cli.main import main
from audify_batch.model.checkpoint import read_card
from audify_batch.store.query import run_sql

_DEFAULT = read_card("default")
MODEL = f"{_DEFAULT.name}-{_DEFAULT.version}"
HAND_SAW = "esc50-fold4-44k/audio/4-102844-A-49.flac"  # the default model detects hand_saw alone


def _thresholds(path: Path, model: str, thresholds: dict[str, float]) -> Path:
    entries = {label: {"threshold": t, "target_precision": 0.9} for label, t in thresholds.items()}
    data = {"format": "audify-thresholds", "version": 1, "model": model, "thresholds": entries}
    path.write_text(json.dumps(data))
    return path


def _detected(out: Path) -> list[tuple[str, ...]]:
    return [tuple(row[0]) for row in run_sql(out, "SELECT detected FROM segments ORDER BY start_s").rows]


def test_label_with_a_thresholds_file_relabels_and_detects_by_it(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    shutil.copy(shared_data / HAND_SAW, archive / "saw.flac")
    assert main(["label", str(archive), "--out", str(out), "--no-progress"]) == 0
    assert _detected(out) == [("hand_saw",)]

    calibrated = _thresholds(tmp_path / "t.json", MODEL, {"dog": 0.0})
    relabel = ["label", str(archive), "--out", str(out), "--no-progress", "--thresholds", str(calibrated)]
    assert main(relabel) == 0
    assert "1 labeled, 0 unchanged" in capsys.readouterr().out  # other thresholds: not skipped
    assert _detected(out) == [("dog", "hand_saw")]
    config = run_sql(out, "SELECT config_json FROM runs ORDER BY started_at DESC LIMIT 1").rows[0][0]
    assert json.loads(config)["runtime"]["thresholds_file"] == str(calibrated)

    assert main(["classify", str(archive / "saw.flac"), "--thresholds", str(calibrated)]) == 0
    assert "detected: dog, hand_saw |" in capsys.readouterr().out


def test_a_thresholds_file_of_another_model_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _thresholds(tmp_path / "t.json", "audify-esc50-resnet-1.1.0", {"dog": 0.5})
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"")
    assert main(["classify", str(clip), "--thresholds", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("audify: error:") and err.count("\n") == 1
    assert f"not {MODEL}" in err


@pytest.mark.parametrize(
    "entry", [0.5, {"threshold": "0.5"}, {"threshold": 1.5}, {"threshold": True}, {"target_precision": 0.9}]
)
def test_a_malformed_thresholds_file_is_one_line_and_exit_1(
    entry: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "t.json"
    bad.write_text(
        json.dumps(
            {"format": "audify-thresholds", "version": 1, "model": MODEL, "thresholds": {"dog": entry}}
        )
    )
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"")
    assert main(["classify", str(clip), "--thresholds", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("audify: error:") and "thresholds.dog" in err and err.count("\n") == 1
