"""What the review desk reads from OUT: DuckDB queries over the views, one connection per request.

Every query is a file ``store/sql/app_*.sql`` (or a shared one: ``timeline``, ``events``,
``similar_segments``, ``report_label_counts``) with its values bound as DuckDB variables. A new
connection per request sees what was written since (new runs, new verdicts: the views decide once,
when created, whether OUT has annotations at all) and is never shared between threads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import duckdb

from audify_batch.review import queues
from audify_batch.review.queues import QueueItem
from audify_batch.store.annotations import parse_segment_id
from audify_batch.store.query import QueryResult, connect, fetch, fetch_file, subquery

PAGE_SIZE = 50
QUEUE_SIZE = 200  # segments a review queue holds (and a queue page lists)
SIMILAR_LIMIT = 20
MAX_FILTER_CHARS = 200
QUEUE_KINDS = ("uncertain", "near-tie", "label")
WALK_KINDS = ("list", *QUEUE_KINDS)


@contextmanager
def open_db(out: str, filesystem: Any | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(out, filesystem=filesystem)
    try:
        yield con
    finally:
        con.close()


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    if len(value) > MAX_FILTER_CHARS:
        raise ValueError(f"{name}: at most {MAX_FILTER_CHARS} characters")
    return value or None


def _number(params: Mapping[str, str], name: str) -> float | None:
    text = _text(params, name)
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

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> SegmentFilter:
        """From a query string; a bad number or an over-long value is a ``ValueError``."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            values[f.name] = _number(params, f.name) if f.type == "float | None" else _text(params, f.name)
        return cls(**values)

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def query_items(self) -> list[tuple[str, str]]:
        return [
            (name, f"{value:g}" if isinstance(value, float) else value)
            for name, value in self.params().items()
            if value is not None
        ]


@dataclass(frozen=True)
class Walk:
    """A list a reviewer walks through segment by segment: the filtered table or a review queue."""

    kind: str
    filters: SegmentFilter = SegmentFilter()
    label: str | None = None  # the label of a label queue

    def __post_init__(self) -> None:
        if self.kind not in WALK_KINDS:
            raise ValueError(f"unknown list {self.kind!r}: one of {', '.join(WALK_KINDS)}")
        if self.kind == "label" and not self.label:
            raise ValueError("a label queue needs ?label=")

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> Walk | None:
        """The walk a segment page was opened from (``?walk=``), or None."""
        kind = _text(params, "walk")
        if kind is None:
            return None
        filters = SegmentFilter.from_params(params) if kind == "list" else SegmentFilter()
        return cls(kind, filters, _text(params, "label") if kind == "label" else None)

    def query_items(self, position: int | None = None) -> list[tuple[str, str]]:
        """The walk in a segment page's query string; ``position`` matters for the list only."""
        items = [("walk", self.kind), *self.filters.query_items()]
        if self.label:
            items.append(("label", self.label))
        if self.kind == "list" and position is not None:
            items.append(("pos", str(position)))
        return items


def segment_id(row: Mapping[str, Any]) -> str:
    return f"{row['recording_id']}:{row['segment_index']}"


def list_page(
    con: duckdb.DuckDBPyConnection, model: str, filters: SegmentFilter, limit: int, offset: int
) -> QueryResult:
    """Rows ``offset`` to ``offset + limit`` of the filtered segments, ``n_total`` (how many pass) on each."""
    paging = {"model": model, "limit": limit, "offset": max(offset, 0)}
    return fetch_file(con, "app_segments", {**filters.params(), **paging})


def queue(
    con: duckdb.DuckDBPyConnection, model: str, walk: Walk, thresholds: Mapping[str, float] | None
) -> list[QueueItem]:
    """The review queue ``walk`` names (``review.queues``: segments with a verdict on the queued label
    drop out). ``thresholds``: the model's per-class thresholds, for the uncertain queue."""
    if walk.kind == "label":
        return queues.stratified_queue(con, model, walk.label or "", QUEUE_SIZE)
    if walk.kind == "near-tie":
        return queues.near_tie_queue(con, model, QUEUE_SIZE)
    if walk.kind == "uncertain":
        return queues.uncertain_queue(con, model, QUEUE_SIZE, thresholds)
    raise ValueError(f"{walk.kind!r} is no review queue")


@dataclass(frozen=True)
class Neighbours:
    """Where a segment stands in a walk: before and after it, its position (None: not in it), length."""

    previous: str | None
    next: str | None
    position: int | None
    total: int


def list_neighbours(con: duckdb.DuckDBPyConnection, model: str, walk: Walk, position: int) -> Neighbours:
    """Around ``position`` in the filtered list (the list does not change as verdicts come in)."""
    first = max(position - 1, 0)
    rows = list_page(con, model, walk.filters, position + 2 - first, first).records()
    ids = {first + i: segment_id(row) for i, row in enumerate(rows)}
    total = int(rows[0]["n_total"]) if rows else 0
    return Neighbours(ids.get(position - 1) if position > 0 else None, ids.get(position + 1), position, total)


def queue_neighbours(items: Sequence[QueueItem], current: str) -> Neighbours:
    """Around ``current`` in a queue; once it has its verdict it is out of the queue, and the queue's
    first segment is next (so marking one segment after another walks the whole queue)."""
    ids = [item.segment_id for item in items]
    if current not in ids:
        return Neighbours(None, ids[0] if ids else None, None, len(ids))
    i = ids.index(current)
    return Neighbours(ids[i - 1] if i > 0 else None, ids[i + 1] if i + 1 < len(ids) else None, i, len(ids))


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
