"""What a score means: precision per score bin from reviewed segments, and the threshold that
reaches a target precision (``audify calibrate``).

The reviewed segments of a label are its verdicts (the ``annotations`` view, latest verdict per
segment) on segments still current, each with the score it was given: the model's confidence of
the label (0 where it is not among the segment's top-K) or a custom head's score
(``sql/calibration_scores.sql``). Precision is the share of ``present`` verdicts, with a Wilson
95 % interval. Thresholds are saved in a versioned JSON file that ``apply_thresholds`` reads back
into a model card (the per-class thresholds its ``detected`` labels use).
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
from fsspec.core import url_to_fs

from audify_batch.model.thresholds_file import (
    THRESHOLDS_FORMAT,
    THRESHOLDS_VERSION,
    read_json,
    read_thresholds,
)
from audify_batch.review.heads import resolve_model
from audify_batch.store.query import fetch_file, normalize_out
from audify_batch.store.sink import write_bytes_atomic

WILSON_Z = 1.959963984540054  # two-sided 95 %
MIN_REVIEWS = 10  # reviewed segments at or above a threshold before it is trusted
_SAVE_LOCK = threading.Lock()
CALIBRATION_DIR = "calibration"  # folder under OUT of the default thresholds file


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def wilson_interval(n_present: int, n: int, z: float = WILSON_Z) -> Interval:
    """Wilson score interval of the proportion ``n_present / n`` (95 % by default); (0, 1) when n is 0."""
    if not 0 <= n_present <= n:
        raise ValueError(f"need 0 <= n_present <= n, got {n_present} of {n}")
    if n == 0:
        return Interval(0.0, 1.0)
    p = n_present / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class BinPrecision:
    """Reviewed segments whose score falls in [low_score, high_score) (the last bin includes 1)."""

    low_score: float
    high_score: float
    n: int
    n_present: int
    precision: float | None  # None: no reviewed segment in the bin
    low: float  # Wilson 95 % interval of the precision
    high: float


@dataclass(frozen=True)
class Threshold:
    """The lowest score at or above which reviewed segments reach the target precision."""

    threshold: float
    n: int  # reviewed segments scoring >= threshold
    n_present: int
    precision: float
    low: float
    high: float


@dataclass(frozen=True)
class Calibration:
    model: str
    label: str
    head: str | None  # the custom head whose scores were calibrated; None: the model's confidences
    target_precision: float
    n_reviewed: int
    n_present: int
    bins: tuple[BinPrecision, ...]
    threshold: Threshold | None
    reason: str  # why there is no threshold ('' when there is one)


@dataclass(frozen=True)
class ReviewedScore:
    segment_id: str
    score: float
    present: bool


def check_target(target_precision: float) -> None:
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"the target precision is a share in (0, 1], got {target_precision}")


def precision_bins(reviewed: Sequence[ReviewedScore], bins: int = 10) -> tuple[BinPrecision, ...]:
    """Precision per equal-width score bin over [0, 1]; scores outside it go to the end bins."""
    if bins <= 0:
        raise ValueError(f"bins must be positive, got {bins}")
    counts = [[0, 0] for _ in range(bins)]
    for row in reviewed:
        # float32 0.9 is stored as 0.8999999761..., 0.29 * 100 is 28.999...: both belong one bin up
        i = min(max(math.floor(round(row.score, 7) * bins + 1e-9), 0), bins - 1)
        counts[i][0] += 1
        counts[i][1] += row.present
    result = []
    for i, (n, n_present) in enumerate(counts):
        ci = wilson_interval(n_present, n)
        precision = n_present / n if n else None
        result.append(BinPrecision(i / bins, (i + 1) / bins, n, n_present, precision, ci.low, ci.high))
    return tuple(result)


def lowest_threshold(
    reviewed: Sequence[ReviewedScore], target_precision: float, min_reviews: int = MIN_REVIEWS
) -> tuple[Threshold | None, str]:
    """The lowest reviewed score t whose reviewed segments scoring >= t (at least ``min_reviews`` of
    them) have a precision reaching the target; (None, why not) when no score does."""
    check_target(target_precision)
    if len(reviewed) < min_reviews:
        return None, f"too few reviews: {len(reviewed)} reviewed segments, at least {min_reviews} needed"
    ordered = sorted(reviewed, key=lambda r: r.score, reverse=True)
    best: Threshold | None = None
    n_present = 0
    for n, row in enumerate(ordered, start=1):
        n_present += row.present
        tied_below = n < len(ordered) and ordered[n].score == row.score
        if tied_below or n < min_reviews or n_present < target_precision * n:
            continue
        ci = wilson_interval(n_present, n)
        best = Threshold(row.score, n, n_present, n_present / n, ci.low, ci.high)
    if best is None:
        return None, (
            f"no score reaches precision {target_precision:g} over at least {min_reviews} reviewed segments"
        )
    return best, ""


def reviewed_scores(
    con: duckdb.DuckDBPyConnection, model: str, label: str, head: str | None = None
) -> list[ReviewedScore]:
    """The reviewed segments of ``label`` in ``model`` with their scores (``head``: that custom head's)."""
    rows = fetch_file(con, "calibration_scores", {"model": model, "label": label, "head": head}).rows
    return [ReviewedScore(segment_id, float(score), bool(present)) for segment_id, present, score in rows]


def calibrate(
    con: duckdb.DuckDBPyConnection,
    label: str,
    model: str | None = None,
    target_precision: float = 0.9,
    bins: int = 10,
    head: str | None = None,
    min_reviews: int = MIN_REVIEWS,
) -> Calibration:
    """Precision per score bin of ``label`` and the threshold reaching ``target_precision``.

    ``head``: calibrate that custom head's scores (its verdicts are on ``label``). Raises
    ValueError, one line, for a bad target or bin count, a label with no scores in OUT, or no
    reviewed segments.
    """
    check_target(target_precision)
    if bins <= 0:
        raise ValueError(f"--bins must be positive, got {bins}")
    model = resolve_model(con, label, model)
    known = fetch_file(con, "calibration_known", {"model": model, "label": label, "head": head}).rows
    if not known[0][0]:
        if head is not None:
            raise ValueError(f"custom head {head!r} has no scores for model {model}: run audify head apply")
        raise ValueError(
            f"unknown label {label!r}: model {model} never gave it in OUT (labels are case-sensitive; "
            "for a label of your own, train a custom head: audify head train)"
        )
    reviewed = reviewed_scores(con, model, label, head)
    if not reviewed:
        raise ValueError(
            f"no reviews of label {label!r} for model {model}: review some segments first (audify serve OUT)"
        )
    threshold, reason = lowest_threshold(reviewed, target_precision, min_reviews)
    return Calibration(
        model=model,
        label=label,
        head=head,
        target_precision=target_precision,
        n_reviewed=len(reviewed),
        n_present=sum(r.present for r in reviewed),
        bins=precision_bins(reviewed, bins),
        threshold=threshold,
        reason=reason,
    )


def format_calibration(calibration: Calibration) -> str:
    """The bins as a table, then the threshold line."""
    c = calibration
    scores = f"custom head {c.head}" if c.head else f"model {c.model}"
    lines = [
        f"{c.label!r}, scores of {scores}: {c.n_reviewed} reviewed segments, {c.n_present} present",
        f"{'score':<11} {'n':>5} {'present':>7} {'precision':>9}  95% CI",
    ]
    for b in c.bins:
        precision = f"{b.precision:9.3f}" if b.precision is not None else f"{'-':>9}"
        interval = f"{b.low:.3f}-{b.high:.3f}" if b.n else "-"
        lines.append(
            f"{b.low_score:.2f}-{b.high_score:.2f}  {b.n:>5} {b.n_present:>7} {precision}  {interval}"
        )
    t = c.threshold
    if t is None:
        lines.append(f"threshold: none for target precision {c.target_precision:g} ({c.reason})")
    else:
        lines.append(
            f"threshold {t.threshold:.4f}: precision {t.precision:.3f} (95% CI {t.low:.3f}-{t.high:.3f}) "
            f"over {t.n} reviewed segments scoring >= it (target {c.target_precision:g})"
        )
    return "\n".join(lines)


def default_thresholds_path(out: str | os.PathLike[str], model: str) -> str:
    """``OUT/calibration/thresholds-<model>.json``."""
    return posixpath.join(normalize_out(out), CALIBRATION_DIR, f"thresholds-{model}.json")


def save_threshold(
    path: str, calibration: Calibration, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write (or update) ``calibration``'s threshold in the versioned JSON file at ``path``; the file's
    other labels are kept. Model labels go under ``thresholds``, custom heads' under ``heads``."""
    c, t = calibration, calibration.threshold
    if t is None:
        raise ValueError(f"no threshold to save for {c.label!r}: {c.reason}")
    with _SAVE_LOCK:  # the desk saves from worker threads: one read-modify-write at a time
        return _save(path, c, t, storage_options)


def _save(path: str, c: Calibration, t: Threshold, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    existing = read_json(path, storage_options)
    data = read_thresholds(path, storage_options) if existing is not None else None
    if data is not None and data["model"] != c.model:
        raise ValueError(f"{path} holds thresholds of model {data['model']}, not {c.model}")
    data = data or {"format": THRESHOLDS_FORMAT, "version": THRESHOLDS_VERSION, "model": c.model}
    data.setdefault("thresholds", {})
    data.setdefault("heads", {})
    section, key = ("heads", c.head) if c.head else ("thresholds", c.label)
    data[section][key] = {
        "threshold": t.threshold,
        "target_precision": c.target_precision,
        "precision": t.precision,
        "n_reviewed": c.n_reviewed,
        "n_at_or_above": t.n,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    } | ({"label": c.label} if c.head else {})
    fs, local = url_to_fs(path, **(storage_options or {}))
    write_bytes_atomic(fs, local, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return data
