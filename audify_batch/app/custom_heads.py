"""Custom heads beside the model's own labels: which heads scored a model's segments, the label
each scores (from its card under ``OUT/heads/``), and one segment's scores (the ``head_scores`` view).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from audify_batch.app.data import HIGH_HEAD_SCORE, Segment
from audify_batch.review.heads import HeadCard, load_head
from audify_batch.store.query import fetch_file


@dataclass(frozen=True)
class HeadSummary:
    """A head with scores for a model's current segments."""

    name: str
    label: str  # the label its verdicts are on (its card's; its name where the card is unreadable)
    n_scored: int
    n_high: int  # segments scoring at least HIGH_HEAD_SCORE


@dataclass(frozen=True)
class HeadScore:
    name: str
    label: str
    score: float


def head_card(out: str, name: str) -> HeadCard | None:
    """Head ``name``'s card, or None when it is missing or unreadable (its scores may outlive it)."""
    try:
        card, _ = load_head(out, name)
    except (ValueError, OSError):
        return None
    return card


def head_label(out: str, name: str) -> str:
    """The label head ``name`` scores; its name without a readable card (``audify head train``
    names the label after the head unless told otherwise)."""
    card = head_card(out, name)
    return name if card is None else card.label


def scored(con: duckdb.DuckDBPyConnection, model: str) -> list[tuple[str, int, int]]:
    """``(head, n_scored, n_high)`` of each head with scores for ``model``'s current segments."""
    rows = fetch_file(con, "app_heads", {"model": model, "high": HIGH_HEAD_SCORE}).rows
    return [(str(head), int(n), int(high)) for head, n, high in rows]


def summaries(con: duckdb.DuckDBPyConnection, out: str, model: str) -> list[HeadSummary]:
    return [HeadSummary(name, head_label(out, name), n, high) for name, n, high in scored(con, model)]


def segment_scores(con: duckdb.DuckDBPyConnection, out: str, segment: Segment) -> list[HeadScore]:
    """The heads' scores of ``segment``, by head name."""
    params = {
        "model": segment.model,
        "recording_id": segment.recording_id,
        "segment_index": segment.segment_index,
    }
    rows = fetch_file(con, "app_segment_heads", params).rows
    return [HeadScore(str(name), head_label(out, str(name)), float(score)) for name, score in rows]
