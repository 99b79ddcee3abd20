"""The review queues as the desk walks them, and where a segment stands in a walk.

``review.queues`` builds the queues; this module picks the one a walk names and adds the desk's
two of its own: the segments most like a seed segment, for a label no score speaks for yet (a new
class), and the plain least-confident queue where the model's per-class thresholds are unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb

from audify_batch.app.data import QUEUE_SIZE, Walk, find_segment, list_page, segment_id, similar
from audify_batch.review import queues
from audify_batch.review.queues import QueueItem
from audify_batch.store.query import fetch_file


@dataclass(frozen=True)
class Queue:
    """What is left of a queue, and why it is not quite the queue asked for ('' when it is)."""

    items: list[QueueItem]
    note: str = ""


def queue(
    con: duckdb.DuckDBPyConnection, model: str, walk: Walk, thresholds: Mapping[str, float] | None
) -> Queue:
    """The review queue ``walk`` names (segments with a verdict on the queued label drop out).
    ``thresholds``: the model's per-class thresholds, for the uncertain queue (None: not known)."""
    if walk.kind == "label" and walk.seed:
        return Queue(similar_queue(con, model, walk.seed, walk.label or ""))
    if walk.kind == "label":
        return Queue(queues.stratified_queue(con, model, walk.label or "", QUEUE_SIZE, head=walk.head))
    if walk.kind == "near-tie":
        return Queue(queues.near_tie_queue(con, model, QUEUE_SIZE))
    if walk.kind == "uncertain":
        if not thresholds and queues.is_thresholded(con, model):
            return Queue(least_confident(con, model), unknown_thresholds_note(model))
        return Queue(queues.uncertain_queue(con, model, QUEUE_SIZE, thresholds))
    raise ValueError(f"{walk.kind!r} is no review queue")


def unknown_thresholds_note(model: str) -> str:
    return (
        f"model {model} detects labels with per-class thresholds, which OUT does not keep and this desk "
        "knows only for the model it serves (audify serve --model): so this is the plain least-confident "
        "queue instead, the lowest top-1 confidence first"
    )


def least_confident(con: duckdb.DuckDBPyConnection, model: str) -> list[QueueItem]:
    """The unreviewed segments of lowest top-1 confidence (``queue_uncertain.sql``), thresholds or not."""
    return queues.least_confident_queue(con, model, QUEUE_SIZE)


def similar_queue(con: duckdb.DuckDBPyConnection, model: str, seed: str, label: str) -> list[QueueItem]:
    """``seed`` and the segments most like it (cosine of embeddings), those without a verdict on
    ``label``; the score is the similarity to ``seed``."""
    found = find_segment(con, model, seed)
    if found is None:
        raise LookupError(f"no segment {seed} of model {model}")
    reviewed = set(
        fetch_file(con, "app_label_reviewed", {"model": model, "label": label}).column("segment_id")
    )
    items = [QueueItem(found.segment_id, found.uri, found.start_s, found.end_s, label, 1.0)]
    items += [
        QueueItem(
            segment_id(r), r["uri"], float(r["start_s"]), float(r["end_s"]), label, float(r["similarity"])
        )
        for r in similar(con, found, QUEUE_SIZE - 1).records()
    ]
    return [item for item in items if item.segment_id not in reviewed]


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
