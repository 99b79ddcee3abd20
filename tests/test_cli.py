from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from audify_batch.cli.main import main
from audify_batch.ingest.segments import LastWindow, SegmentingConfig
from audify_batch.model.checkpoint import load_checkpoint
from audify_batch.model.inference import classify_file
from tests.conftest import write_tone

AUDIFY = Path(sys.executable).parent / "audify"


def predictions(out: str) -> list[list[str]]:
    """Rows of ``classify``: start, end, then the top-K ESC-50 labels and confidences (what is
    detected and the AudioSet labels, ``|``-separated around them, are left out)."""
    rows = []
    for line in out.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split(" | ")
        span = fields[0].split()[:2]
        labels = next(f for f in fields[1:] + fields[:1] if not f.startswith("AudioSet:"))
        if labels is fields[0]:
            labels = " ".join(fields[0].split()[2:])
        rows.append(span + labels.split())
    return rows


def detected(out: str) -> list[str]:
    """What ``classify`` says is detected in each segment, as printed."""
    return [line.split("detected: ")[1].split(" | ")[0] for line in out.splitlines() if "detected: " in line]


def test_classify_any_length_rate_and_channels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_tone(tmp_path / "long.wav", 12.5, 48_000, channels=3)
    assert main(["classify", str(path), "--top-k", "4"]) == 0
    rows = predictions(capsys.readouterr().out)
    assert [(float(r[0]), float(r[1])) for r in rows] == [(0.0, 5.0), (5.0, 10.0), (10.0, 12.5)]
    assert all(len(r) == 2 + 2 * 4 for r in rows)
    confidences = [float(r[3]) for r in rows]
    assert all(0.0 <= c <= 1.0 for c in confidences)


def test_hop_and_last_window_policy(tmp_path: Path) -> None:
    model, card = load_checkpoint()
    path = write_tone(tmp_path / "tone.flac", 12.0, 22_050)
    overlapped = list(classify_file(model, card, path, k=1, segmenting=SegmentingConfig(hop_s=2.5)))
    assert [(p.start_s, p.end_s) for p in overlapped] == [(0.0, 5.0), (2.5, 7.5), (5.0, 10.0), (7.5, 12.0)]
    dropped = list(
        classify_file(model, card, path, k=1, segmenting=SegmentingConfig(last_window=LastWindow.DROP))
    )
    assert [(p.start_s, p.end_s) for p in dropped] == [(0.0, 5.0), (5.0, 10.0)]
    one_sample = list(classify_file(model, card, write_tone(tmp_path / "one.wav", 1 / 8_000, 8_000), k=2))
    assert len(one_sample) == 1 and one_sample[0].end_s == 1 / 8_000
    assert one_sample[0].embedding.shape == (card.arch.embedding_dim,)


@pytest.mark.parametrize(
    "content",
    [b"", b"definitely not audio\n" * 50, b"fLaC\x00\x00\x00\x22" + b"\x00" * 20],
    ids=["empty", "text", "corrupt-flac"],
)
def test_bad_file_is_one_line_error_and_exit_1(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.flac"
    path.write_bytes(content)
    result = subprocess.run([str(AUDIFY), "classify", str(path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("audify: error:") and "bad.flac" in result.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", str(tmp_path / "missing.wav")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("audify: error:") and "missing.wav" in err


def fixed_sample_44k(shared_data: Path, n: int) -> list[tuple[Path, str]]:
    folder = shared_data / "esc50-fold4-44k"
    with (folder / "fold4.csv").open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["filename"])
    picked = rows[:: len(rows) // n][:n]
    return [(folder / "audio" / row["filename"], row["category"]) for row in picked]


def test_true_class_in_top3_for_most_real_44k_clips(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = fixed_sample_44k(shared_data, 25)
    hits = 0
    for path, category in sample:
        assert main(["classify", str(path), "--top-k", "3"]) == 0
        rows = predictions(capsys.readouterr().out)
        assert len(rows) == 1
        hits += category in rows[0][2::2]
    assert hits >= 0.8 * len(sample), f"true class in top 3 for {hits} of {len(sample)}"


def test_console_script_classifies_a_real_clip(shared_data: Path) -> None:
    path, _ = fixed_sample_44k(shared_data, 1)[0]
    result = subprocess.run([str(AUDIFY), "classify", str(path)], capture_output=True, text=True, check=True)
    assert len(predictions(result.stdout)) == 1 and result.stderr == ""
