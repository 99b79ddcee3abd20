"""What the review desk reads from OUT: DuckDB queries over the views, one connection per request.

Every query is a file ``store/sql/app_*.sql`` (or a shared one: ``timeline``, ``events``,
``similar_segments``, ``report_label_counts``) with its values bound as DuckDB variables. A new
connection per request sees what was written since (new runs, new verdicts: the views decide once,
when created, whether OUT has annotations at all) and is never shared between threads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import duckdb

from audify_batch.review.heads import check_head_name
from audify_batch.store.annotations import clean_label, parse_segment_id
from audify_batch.store.query import QueryResult, connect, fetch, fetch_file, subquery

PAGE_SIZE = 50
QUEUE_SIZE = 200  # segments a review queue holds (and a queue page lists)
SIMILAR_LIMIT = 20
MAX_FILTER_CHARS = 200
QUEUE_KINDS = ("uncertain", "near-tie", "label")
WALK_KINDS = ("list", *QUEUE_KINDS)
HIGH_HEAD_SCORE = 0.5  # a custom head's segments "at or above" this are its likely hits


@contextmanager
def open_db(out: str, filesystem: Any | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(out, filesystem=filesystem)
    try:
        yield con
    finally:
        con.close()


def text_param(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    if len(value) > MAX_FILTER_CHARS:
        raise ValueError(f"{name}: at most {MAX_FILTER_CHARS} characters")
    return value or None


def number_param(params: Mapping[str, str], name: str) -> float | None:
    text = text_param(params, name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}: a finite number, got {text!r}")
    return value


@dataclass(frozen=True)
class SegmentFilter:
    """The filters of the segment table; None: not applied (see ``app_segments.sql``)."""

    label: str | None = None
    detected: str | None = None
    audioset: str | None = None
    min_score: float | None = None
    max_score: float | None = None
    uri: str | None = None
    min_start_s: float | None = None
    max_start_s: float | None = None
    run_id: str | None = None
    head: str | None = None  # a custom head: the segments it scored, highest first
    min_head_score: float | None = None

    def __post_init__(self) -> None:
        if self.head is not None:
            check_head_name(self.head)
        elif self.min_head_score is not None:
            raise ValueError("min_head_score goes with head (a custom head's name)")

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> SegmentFilter:
        """From a query string; a bad number or an over-long value is a ``ValueError``."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            values[f.name] = (
                number_param(params, f.name) if f.type == "float | None" else text_param(params, f.name)
            )
        return cls(**values)

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def query_items(self) -> list[tuple[str, str]]:
        return [
            (name, f"{value:g}" if isinstance(value, float) else value)
            for name, value in self.params().items()
            if value is not None
        ]


def label_param(params: Mapping[str, str]) -> str | None:
    """``?label=``: a label as verdicts store it (a new class is fine), or None."""
    text = text_param(params, "label")
    return None if text is None else clean_label(text)


@dataclass(frozen=True)
class Walk:
    """A list a reviewer walks through segment by segment: the filtered table or a review queue.

    A label queue samples ``label``'s segments over the model's confidence of it, or over custom
    head ``head``'s scores, or (``seed``: a segment id) walks the segments most like ``seed``.
    """

    kind: str
    filters: SegmentFilter = SegmentFilter()
    label: str | None = None  # the label of a label queue
    head: str | None = None
    seed: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in WALK_KINDS:
            raise ValueError(f"unknown list {self.kind!r}: one of {', '.join(WALK_KINDS)}")
        if self.kind == "label" and not self.label:
            raise ValueError("a label queue needs ?label=")
        if self.label is not None:
            clean_label(self.label)
        if (self.head or self.seed) and self.kind != "label":
            raise ValueError("head and seed go with a label queue")
        if self.head and self.seed:
            raise ValueError("a label queue follows a head's scores or a seed segment, not both")
        if self.head:
            check_head_name(self.head)
        if self.seed:
            parse_segment_id(self.seed)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Walk | None:
        """The walk a segment page was opened from (``?walk=``), or None."""
        kind = text_param(params, "walk")
        if kind is None:
            return None
        if kind == "list":
            return cls(kind, SegmentFilter.from_params(params))
        if kind == "label":
            return cls.label_queue(params)
        return cls(kind)

    @classmethod
    def label_queue(cls, params: Mapping[str, str]) -> Walk:
        return cls(
            "label",
            label=label_param(params),
            head=text_param(params, "head"),
            seed=text_param(params, "seed"),
        )

    def query_items(self, position: int | None = None) -> list[tuple[str, str]]:
        """The walk in a segment page's query string; ``position`` matters for the list only."""
        items = [("walk", self.kind), *self.filters.query_items()]
        items += [(name, value) for name in ("label", "head", "seed") if (value := getattr(self, name))]
        if self.kind == "list" and position is not None:
            items.append(("pos", str(position)))
        return items

    @property
    def asked_label(self) -> str | None:
        """The label this walk reviews, where it names one: a label queue's, the filtered label."""
        if self.kind == "label":
            return self.label
        return self.filters.label or self.filters.detected


def segment_id(row: Mapping[str, Any]) -> str:
    return f"{row['recording_id']}:{row['segment_index']}"


def list_page(
    con: duckdb.DuckDBPyConnection, model: str, filters: SegmentFilter, limit: int, offset: int
) -> QueryResult:
    """Rows ``offset`` to ``offset + limit`` of the filtered segments, ``n_total`` (how many pass) on each."""
    paging = {"model": model, "limit": limit, "offset": max(offset, 0)}
    return fetch_file(con, "app_segments", {**filters.params(), **paging})


@dataclass(frozen=True)
class Segment:
    """One labeled segment of one model, as the segment page shows it."""

    model: str
    recording_id: str
    segment_index: int
    uri: str
    start_s: float
    end_s: float
    labels: tuple[str, ...]
    confidences: tuple[float, ...]
    detected: tuple[str, ...] | None
    audioset_labels: tuple[str, ...]
    audioset_scores: tuple[float, ...]
    run_id: str
    recording_s: float | None

    @property
    def segment_id(self) -> str:
        return f"{self.recording_id}:{self.segment_index}"

    @property
    def shown_label(self) -> str:
        """The label put to the reviewer: the most confident detected one, else the top-1."""
        if self.detected:
            ranked = [label for label in self.labels if label in self.detected]
            return ranked[0] if ranked else self.detected[0]
        return self.labels[0] if self.labels else ""


def find_segment(con: duckdb.DuckDBPyConnection, model: str, segment: str) -> Segment | None:
    """The segment ``RECORDING_ID:INDEX`` of ``model``, or None (a malformed id included)."""
    try:
        recording_id, index = parse_segment_id(segment)
    except ValueError:
        return None
    params = {"model": model, "recording_id": recording_id, "segment_index": index}
    rows = fetch_file(con, "app_segment", params).records()
    if not rows:
        return None
    row = rows[0]
    return Segment(
        model=row["model"],
        recording_id=row["recording_id"],
        segment_index=int(row["segment_index"]),
        uri=row["uri"],
        start_s=float(row["start_s"]),
        end_s=float(row["end_s"]),
        labels=tuple(row["labels"] or ()),
        confidences=tuple(row["confidences"] or ()),
        detected=None if row["detected"] is None else tuple(row["detected"]),
        audioset_labels=tuple(row["audioset_labels"] or ()),
        audioset_scores=tuple(row["audioset_scores"] or ()),
        run_id=row["run_id"],
        recording_s=row["recording_s"],
    )


def verdicts(con: duckdb.DuckDBPyConnection, model: str, segment: str) -> QueryResult:
    return fetch_file(con, "app_segment_verdicts", {"model": model, "segment_id": segment})


def similar(con: duckdb.DuckDBPyConnection, segment: Segment, limit: int = SIMILAR_LIMIT) -> QueryResult:
    """The ``limit`` segments of the same model nearest by embedding (cosine), with their recording_id."""
    sql = f"""SELECT r.recording_id, s.position, s.uri, s.segment_index, s.start_s, s.end_s, s.label,
                  s.confidence, s.similarity
              FROM ({subquery("similar_segments")}) AS s JOIN recordings AS r USING (model, uri)
              ORDER BY s.position"""
    params = {
        "uri": segment.uri,
        "segment_index": segment.segment_index,
        "model": segment.model,
        "limit": limit,
    }
    return fetch(con, sql, params)


def models(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The models in OUT, the model of the latest run first."""
    return [str(m) for m in fetch_file(con, "app_models").column("model")]


def overview(con: duckdb.DuckDBPyConnection) -> QueryResult:
    return fetch_file(con, "app_overview")


def label_counts(con: duckdb.DuckDBPyConnection, model: str) -> QueryResult:
    return fetch_file(con, "report_label_counts", {"model": model})


def queue_labels(con: duckdb.DuckDBPyConnection, model: str) -> QueryResult:
    return fetch_file(con, "app_queue_labels", {"model": model})


def reviewed_labels(con: duckdb.DuckDBPyConnection, model: str) -> QueryResult:
    """The labels with verdicts for ``model``: ``label, n_reviewed, n_present``."""
    return fetch_file(con, "app_calibration_labels", {"model": model})


def recordings(con: duckdb.DuckDBPyConnection, model: str, limit: int, offset: int) -> QueryResult:
    return fetch_file(con, "app_recordings", {"model": model, "limit": limit, "offset": max(offset, 0)})


def recording(con: duckdb.DuckDBPyConnection, model: str, recording_id: str) -> dict[str, Any] | None:
    rows = fetch_file(con, "app_recording", {"model": model, "recording_id": recording_id}).records()
    return rows[0] if rows else None


def timeline(con: duckdb.DuckDBPyConnection, model: str, uri: str) -> QueryResult:
    return fetch_file(con, "timeline", {"model": model, "uri": uri})


def events(con: duckdb.DuckDBPyConnection, model: str, uri: str) -> QueryResult:
    return fetch_file(con, "events", {"model": model, "uri": uri})


def choices(con: duckdb.DuckDBPyConnection, model: str) -> dict[str, list[tuple[str, int]]]:
    """Filter values with their segment counts: ``label``, ``detected``, ``audioset``, ``run_id``."""
    found: dict[str, list[tuple[str, int]]] = {"label": [], "detected": [], "audioset": [], "run_id": []}
    for kind, value, n in fetch_file(con, "app_choices", {"model": model}).rows:
        if value is not None:
            found[kind].append((str(value), int(n)))
    return found
