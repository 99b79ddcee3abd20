"""What a score means, on the desk: one label's (or custom head's) calibration from the verdicts,
and saving its threshold. The sums are ``review.calibrate``'s, and the threshold goes to the file
``audify calibrate`` writes (``OUT/calibration/thresholds-MODEL.json``) through the same function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
from pydantic import BaseModel, ConfigDict, Field, field_validator

from audify_batch.app.data import label_param, number_param, text_param
from audify_batch.model.thresholds_file import read_thresholds
from audify_batch.review.calibrate import (
    MIN_REVIEWS,
    Calibration,
    calibrate,
    check_target,
    default_thresholds_path,
    save_threshold,
)
from audify_batch.review.heads import check_head_name
from audify_batch.store.annotations import clean_label

DEFAULT_TARGET = 0.9
DEFAULT_BINS = 10
MAX_BINS = 100
MAX_MIN_REVIEWS = 1_000_000


def _whole(params: Mapping[str, str], name: str, default: int) -> int:
    value = number_param(params, name)
    if value is None:
        return default
    if not value.is_integer():
        raise ValueError(f"{name}: a whole number, got {value:g}")
    return int(value)


@dataclass(frozen=True)
class CalibrationQuery:
    """What to calibrate: ``label``'s verdicts against the model's confidence of it, or against custom
    head ``head``'s scores; and how (``audify calibrate``'s options)."""

    label: str | None = None
    head: str | None = None
    target_precision: float = DEFAULT_TARGET
    bins: int = DEFAULT_BINS
    min_reviews: int = MIN_REVIEWS

    def __post_init__(self) -> None:
        check_target(self.target_precision)
        if not 0 < self.bins <= MAX_BINS:
            raise ValueError(f"bins: 1 to {MAX_BINS}, got {self.bins}")
        if not 0 < self.min_reviews <= MAX_MIN_REVIEWS:
            raise ValueError(f"min_reviews: 1 to {MAX_MIN_REVIEWS}, got {self.min_reviews}")
        if self.label is not None:
            clean_label(self.label)
        if self.head is not None:
            check_head_name(self.head)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> CalibrationQuery:
        """From ``?label=&head=&target=&bins=&min_reviews=``; a bad value is a ``ValueError``."""
        target = number_param(params, "target")
        return cls(
            label=label_param(params),
            head=text_param(params, "head"),
            target_precision=DEFAULT_TARGET if target is None else target,
            bins=_whole(params, "bins", DEFAULT_BINS),
            min_reviews=_whole(params, "min_reviews", MIN_REVIEWS),
        )

    def params(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "head": self.head,
            "target": f"{self.target_precision:g}",
            "bins": self.bins,
            "min_reviews": self.min_reviews,
        }


@dataclass(frozen=True)
class Outcome:
    """A calibration as the page shows it, with the threshold saved so far."""

    model: str
    query: CalibrationQuery
    calibration: Calibration | None
    problem: str  # why there is no calibration ('' when there is one)
    path: str  # the thresholds file
    saved: Mapping[str, Any] | None  # what the file holds for this label (or head), if anything
    saved_problem: str  # why the file could not be read ('' when it could, or is not there)


def run(con: duckdb.DuckDBPyConnection, out: str, model: str, query: CalibrationQuery) -> Outcome:
    """``query`` calibrated for ``model`` (its label given, or its head's: see the caller)."""
    calibration, problem = None, ""
    try:
        calibration = calibrate(
            con,
            query.label or "",
            model,
            query.target_precision,
            query.bins,
            query.head,
            query.min_reviews,
        )
    except ValueError as error:
        problem = str(error)
    path = default_thresholds_path(out, model)
    saved, saved_problem = _saved(path, query)
    return Outcome(model, query, calibration, problem, path, saved, saved_problem)


def _saved(path: str, query: CalibrationQuery) -> tuple[Mapping[str, Any] | None, str]:
    try:
        data = read_thresholds(path)
    except FileNotFoundError:
        return None, ""
    except (ValueError, OSError) as error:
        return None, str(error)
    section = data.get("heads", {}) if query.head else data["thresholds"]
    entry = section.get(query.head or query.label) if isinstance(section, dict) else None
    return (entry if isinstance(entry, dict) else None), ""


class SaveRequest(BaseModel):
    """The save button's body: what to calibrate again on the server and save."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    label: str = Field(min_length=1, max_length=160)
    head: str | None = Field(default=None, min_length=1, max_length=64)
    target_precision: float = Field(gt=0.0, le=1.0)
    bins: int = Field(default=DEFAULT_BINS, gt=0, le=MAX_BINS)
    min_reviews: int = Field(default=MIN_REVIEWS, gt=0, le=MAX_MIN_REVIEWS)

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        return clean_label(value)

    @field_validator("head")
    @classmethod
    def _head(cls, value: str | None) -> str | None:
        return None if value is None else check_head_name(value)

    def query(self) -> CalibrationQuery:
        return CalibrationQuery(self.label, self.head, self.target_precision, self.bins, self.min_reviews)


def save(con: duckdb.DuckDBPyConnection, out: str, request: SaveRequest) -> dict[str, Any]:
    """Calibrate again (the verdicts may have changed since the page) and save the threshold into
    the thresholds file, as ``audify calibrate`` does; ValueError (one line) when there is none."""
    q = request.query()
    result = calibrate(con, q.label or "", request.model, q.target_precision, q.bins, q.head, q.min_reviews)
    t = result.threshold
    if t is None:
        raise ValueError(f"no threshold to save for {result.label!r}: {result.reason}")
    path = default_thresholds_path(out, result.model)
    save_threshold(path, result)
    return {
        "path": path,
        "model": result.model,
        "label": result.label,
        "head": result.head,
        "threshold": t.threshold,
        "precision": t.precision,
        "n_at_or_above": t.n,
        "target_precision": result.target_precision,
    }


def served_thresholds(card: dict[str, float], out: str, model: str) -> dict[str, float]:
    """A model card's per-class thresholds with those calibrated in OUT
    (``OUT/calibration/thresholds-MODEL.json``, what the desk saves) in their place."""
    if not card:
        return card
    try:
        calibrated = read_thresholds(default_thresholds_path(out, model))["thresholds"]
    except FileNotFoundError:
        return card
    return card | {label: float(entry["threshold"]) for label, entry in calibrated.items() if label in card}
