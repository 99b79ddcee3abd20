"""Review queues: which segments a reviewer should look at next (the review desk calls these).

- ``stratified_queue``: one label's unreviewed segments, an equal number per score bin where the
  bins hold enough, so that calibration (``review.calibrate``) sees the whole score range;
- ``uncertain_queue``: the calls the model is least sure of: for a model that names its top-1
  label, the lowest top-1 confidence; for a model with per-class thresholds (give them, e.g.
  ``card_thresholds(read_card(model_dir))``: OUT does not store the card), the top-K labels whose
  score is nearest their class threshold, detected or just missed;
- ``near_tie_queue``: the smallest gap between the two best labels.

Each leaves out what already has a verdict (on the queued label; for near ties, on either label)
and returns ``QueueItem`` rows. SQL: ``sql/queue_*.sql``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import duckdb

from audify_batch.model.checkpoint import ModelCard
from audify_batch.store.query import QueryResult, fetch, fetch_file

MAX_QUEUE = 10_000


@dataclass(frozen=True)
class QueueItem:
    """One segment to review, and the call to check on it."""

    segment_id: str  # RECORDING_ID:SEGMENT_INDEX
    uri: str
    start_s: float
    end_s: float
    label: str
    score: float
    # uncertain with thresholds: score minus threshold (>= 0: detected); near tie: rank-1 minus
    # rank-2 confidence; None otherwise
    margin: float | None = None
    runner_up: str | None = None  # near tie: the rank-2 label
    bin: int | None = None  # stratified: the score bin (0 .. bins-1)


def card_thresholds(card: ModelCard) -> dict[str, float]:
    """A model's per-class thresholds by label (empty for models that name their top-1 label)."""
    return dict(zip(card.labels, card.thresholds, strict=True)) if card.thresholds else {}


def _check_n(n: int) -> None:
    if not 0 < n <= MAX_QUEUE:
        raise ValueError(f"a queue holds 1 to {MAX_QUEUE} segments, got {n}")


def _items(result: QueryResult) -> list[QueueItem]:
    items = []
    for row in result.records():
        items.append(
            QueueItem(
                segment_id=row["segment_id"],
                uri=row["uri"],
                start_s=float(row["start_s"]),
                end_s=float(row["end_s"]),
                label=row["label"],
                score=float(row["score"]),
                margin=None if row.get("margin") is None else float(row["margin"]),
                runner_up=row.get("runner_up"),
                bin=row.get("bin"),
            )
        )
    return items


def stratified_queue(
    con: duckdb.DuckDBPyConnection,
    model: str,
    label: str,
    n: int,
    bins: int = 10,
    seed: int = 0,
    head: str | None = None,
) -> list[QueueItem]:
    """``n`` unreviewed segments for ``label``, spread over ``bins`` equal score bins: bins take
    turns (in an order fixed by ``seed``), so each gets ``n // bins`` where it holds that many and
    fuller bins fill the rest. ``head``: bin that custom head's scores instead of the model's."""
    _check_n(n)
    if not 0 < bins <= 100:
        raise ValueError(f"bins must be 1 to 100, got {bins}")
    params = {"model": model, "label": label, "head": head, "n": n, "bins": bins, "seed": seed}
    return _items(fetch_file(con, "queue_stratified", params))


def is_thresholded(con: duckdb.DuckDBPyConnection, model: str) -> bool:
    """Whether ``model``'s segments carry ``detected`` labels (a model with per-class thresholds)."""
    sql = "SELECT bool_or(detected IS NOT NULL) FROM segments WHERE model = getvariable('model')"
    return bool(fetch(con, sql, {"model": model}).rows[0][0])


def uncertain_queue(
    con: duckdb.DuckDBPyConnection, model: str, n: int, thresholds: Mapping[str, float] | None = None
) -> list[QueueItem]:
    """The ``n`` calls ``model`` is least sure of (see the module docstring). A model with per-class
    thresholds needs ``thresholds`` (label -> threshold); without them it is a ValueError."""
    _check_n(n)
    if thresholds:
        labels = sorted(thresholds)
        params = {"model": model, "n": n, "threshold_labels": labels}
        params["threshold_values"] = [float(thresholds[label]) for label in labels]
        return _items(fetch_file(con, "queue_near_threshold", params))
    if is_thresholded(con, model):
        raise ValueError(
            f"model {model} detects labels with per-class thresholds: pass them "
            "(queues.card_thresholds(read_card(MODEL_DIR))) to queue the calls nearest them"
        )
    return least_confident_queue(con, model, n)


def least_confident_queue(con: duckdb.DuckDBPyConnection, model: str, n: int) -> list[QueueItem]:
    """The ``n`` unreviewed segments of lowest top-1 confidence, whether or not ``model`` has
    per-class thresholds (for those, ``uncertain_queue`` with them means more)."""
    _check_n(n)
    return _items(fetch_file(con, "queue_uncertain", {"model": model, "n": n}))


def near_tie_queue(con: duckdb.DuckDBPyConnection, model: str, n: int) -> list[QueueItem]:
    """The ``n`` segments whose two best labels are closest in confidence."""
    _check_n(n)
    return _items(fetch_file(con, "queue_near_tie", {"model": model, "n": n}))
