"""Calibration (review/calibrate.py, ``audify calibrate``): Wilson intervals, precision per score
bin from reviewed segments, the threshold that reaches a target, the thresholds file."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from audify_batch.cli.main import main
from audify_batch.model.checkpoint import read_card, resolve_model_dir
from audify_batch.model.thresholds_file import apply_thresholds, read_thresholds
from audify_batch.review.calibrate import (
    ReviewedScore,
    calibrate,
    default_thresholds_path,
    lowest_threshold,
    precision_bins,
    save_threshold,
    wilson_interval,
)
from audify_batch.store.annotations import Annotation, AnnotationWriter, Verdict
from audify_batch.store.query import connect
from tests.synthetic_output import M1, URI_A, URI_B, URI_D, recording_id, write_synthetic_output


def verdict(uri: str, index: int, label: str, present: bool, model: str = M1, at: str = "") -> Annotation:
    """A verdict on segment ``index`` (1-second segments) of ``uri`` in the synthetic OUT."""
    extra = {"annotated_at": datetime.fromisoformat(at)} if at else {}
    return Annotation(
        model=model,
        segment_id=f"{recording_id(uri)}:{index}",
        uri=uri,
        start_s=float(index),
        end_s=float(index + 1),
        label=label,
        verdict=Verdict.PRESENT if present else Verdict.ABSENT,
        **extra,
    )


@pytest.fixture
def reviewed_out(tmp_path: Path) -> Path:
    """The synthetic OUT with verdicts on 'dog' in M1, whose scores are known:
    A0 0.9 present, A1 0.8 present, A6 0.85 absent (after an earlier 'present'), A2 0 (dog not in
    its top-3) present, D0 0.12 absent (crackling_fire 0.8: dog second, 0.2 * 0.6), B0 0.03 absent
    (o'clock 0.9: dog third, 0.1 * 0.3); D2 exists only in D's superseded run: not counted."""
    out = write_synthetic_output(tmp_path / "out").out
    writer = AnnotationWriter(str(out))
    writer.append([verdict(URI_A, 6, "dog", True, at="2024-06-01T00:00:00+00:00")])
    writer.append(
        [
            verdict(URI_A, 0, "dog", True),
            verdict(URI_A, 1, "dog", True),
            verdict(URI_A, 6, "dog", False),
            verdict(URI_A, 2, "dog", True),
            verdict(URI_D, 0, "dog", False),
            verdict(URI_B, 0, "dog", False),
            verdict(URI_D, 2, "dog", True),
            verdict(URI_A, 3, "rain", True),
        ]
    )
    return out


def test_wilson_intervals_match_published_values() -> None:
    for (k, n), (low, high) in {
        (8, 10): (0.4902, 0.9433),
        (9, 10): (0.5958, 0.9821),
        (0, 10): (0.0, 0.2775),
        (10, 10): (0.7225, 1.0),
        (50, 100): (0.4038, 0.5962),
    }.items():
        ci = wilson_interval(k, n)
        assert ci.low == pytest.approx(low, abs=1e-4) and ci.high == pytest.approx(high, abs=1e-4), (k, n)
    assert (wilson_interval(0, 0).low, wilson_interval(0, 0).high) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def constructed(n: int = 20) -> list[ReviewedScore]:
    """Scores 0, 0.05, ..., 0.95; present from 0.5 up, except an absent one at 0.7."""
    return [ReviewedScore(f"r:{i}", i / n, i / n >= 0.5 and i != 14) for i in range(n)]


def test_the_lowest_threshold_reaching_the_target() -> None:
    threshold, reason = lowest_threshold(constructed(), 0.9)
    assert reason == "" and threshold is not None
    assert threshold.threshold == 0.5  # 9 of the 10 at or above; at 0.45 it would be 9 of 11
    assert (threshold.n, threshold.n_present, threshold.precision) == (10, 9, 0.9)
    ci = wilson_interval(9, 10)
    assert (threshold.low, threshold.high) == (ci.low, ci.high)
    strict, _ = lowest_threshold(constructed(), 1.0, min_reviews=3)
    assert strict is not None and strict.threshold == 0.75 and strict.n == 5  # above the absent 0.7


def test_no_threshold_with_too_few_reviews_or_an_unreachable_target() -> None:
    threshold, reason = lowest_threshold(constructed()[:5], 0.9)
    assert threshold is None and "too few reviews" in reason
    threshold, reason = lowest_threshold(constructed(), 1.0, min_reviews=10)
    assert threshold is None and "no score reaches precision 1" in reason


def test_tied_scores_share_one_threshold() -> None:
    rows = [ReviewedScore(f"r:{i}", 0.5, i < 9) for i in range(10)] + [ReviewedScore("r:x", 0.9, True)]
    threshold, _ = lowest_threshold(rows, 0.9, min_reviews=2)
    assert threshold is not None and (threshold.threshold, threshold.n) == (0.5, 11)


def test_precision_bins_count_each_score_once() -> None:
    bins = precision_bins(constructed(), bins=4)
    assert [(b.low_score, b.high_score, b.n, b.n_present) for b in bins] == [
        (0.0, 0.25, 5, 0),
        (0.25, 0.5, 5, 0),
        (0.5, 0.75, 5, 4),
        (0.75, 1.0, 5, 5),
    ]
    ci = wilson_interval(4, 5)
    assert bins[2].precision == 0.8 and (bins[2].low, bins[2].high) == (ci.low, ci.high)
    edge = precision_bins([ReviewedScore("a:1", 1.0, True), ReviewedScore("a:2", -0.1, False)], bins=2)
    assert [b.n for b in edge] == [1, 1]


def test_calibrate_reads_the_latest_verdicts_on_current_segments(reviewed_out: Path) -> None:
    con = connect(reviewed_out)
    try:
        result = calibrate(con, "dog", target_precision=0.6, min_reviews=2)
    finally:
        con.close()
    assert result.model == M1  # the one model with verdicts on 'dog'
    assert (result.n_reviewed, result.n_present) == (6, 3)  # D2 (superseded run) left out
    counts = {i: (b.n, b.n_present) for i, b in enumerate(result.bins) if b.n}
    assert counts == {0: (2, 1), 1: (1, 0), 8: (2, 1), 9: (1, 1)}
    # the stored float32 score itself (0.800000011920929), never a rounded value above it, so the
    # segment the threshold was set on is still detected at it (float32 scores >= threshold)
    assert result.threshold is not None and result.threshold.threshold == float(np.float32(0.8))
    assert (result.threshold.n, result.threshold.n_present) == (3, 2)


def test_calibrate_errors(reviewed_out: Path) -> None:
    con = connect(reviewed_out)
    try:
        with pytest.raises(ValueError, match="unknown label 'cat'"):
            calibrate(con, "cat", model=M1)
        with pytest.raises(ValueError, match="no reviews of label 'wind'"):
            calibrate(con, "wind", model=M1)
        with pytest.raises(ValueError, match="target precision"):
            calibrate(con, "dog", target_precision=0.0)
    finally:
        con.close()


def test_thresholds_file_keeps_other_labels_and_feeds_a_card(reviewed_out: Path, tmp_path: Path) -> None:
    card = read_card(resolve_model_dir("default"))
    model = f"{card.name}-{card.version}"
    path = str(tmp_path / "thresholds.json")
    con = connect(reviewed_out)
    try:
        result = calibrate(con, "dog", model=M1, target_precision=0.6, min_reviews=2)
    finally:
        con.close()
    assert result.threshold is not None
    for label, value in (("dog", 0.42), ("rooster", 0.3), ("dog", 0.45)):
        threshold = dataclasses.replace(result.threshold, threshold=value)
        save_threshold(path, dataclasses.replace(result, model=model, label=label, threshold=threshold))
    data = read_thresholds(path)
    assert (data["format"], data["version"], data["model"]) == ("audify-thresholds", 1, model)
    assert {k: v["threshold"] for k, v in data["thresholds"].items()} == {"dog": 0.45, "rooster": 0.3}
    assert data["thresholds"]["dog"]["target_precision"] == 0.6 and data["thresholds"]["dog"]["created_at"]
    tuned = apply_thresholds(card, path)
    i, j = card.labels.index("dog"), card.labels.index("rooster")
    assert (tuned.thresholds[i], tuned.thresholds[j]) == (0.45, 0.3)
    others = [k for k in range(len(card.labels)) if k not in (i, j)]
    assert [tuned.thresholds[k] for k in others] == [card.thresholds[k] for k in others]
    with pytest.raises(ValueError, match="holds thresholds of model"):
        save_threshold(path, result)  # another model's file
    fast = dataclasses.replace(read_card(resolve_model_dir("fast")), name=card.name, version=card.version)
    with pytest.raises(ValueError, match="no per-class thresholds"):
        apply_thresholds(fast, path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**data, "thresholds": {"unicorn": {"threshold": 0.5}}}))
    with pytest.raises(ValueError, match="lacks: unicorn"):
        apply_thresholds(card, str(bad))
    bad.write_text(json.dumps({**data, "version": 2}))
    with pytest.raises(ValueError, match="version 1"):
        apply_thresholds(card, str(bad))


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("audify: error: "), err
    return lines[0]


def test_cli_prints_the_bins_and_saves_the_threshold(
    reviewed_out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "calibrate",
        str(reviewed_out),
        "--label",
        "dog",
        "--target-precision",
        "0.6",
        "--min-reviews",
        "2",
    ]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        "'dog', scores of model audify-esc50-resnet-1.0.0: 6 reviewed segments, 3 present"
    )
    assert lines[2].split() == ["0.00-0.10", "2", "1", "0.500", "0.095-0.905"]
    assert lines[12].startswith("threshold 0.8000: precision 0.667 (95% CI 0.208-0.939) over 3 reviewed")
    saved = default_thresholds_path(reviewed_out, M1)
    assert lines[13] == f"saved to {saved}"
    assert read_thresholds(saved)["thresholds"]["dog"]["threshold"] == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--label", "cat"], "unknown label 'cat'"),
        (["--label", "wind", "--model", M1], "no reviews of label 'wind'"),
        (["--label", "dog", "--target-precision", "1.5"], "target precision is a share in (0, 1]"),
        ([], "give --label"),
        (["--head", "nope"], "no custom head 'nope'"),
    ],
)
def test_cli_errors_are_one_line(
    reviewed_out: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["calibrate", str(reviewed_out), *extra]) == 1
    captured = capsys.readouterr()
    assert message in one_error_line(captured.err) and captured.out == ""
