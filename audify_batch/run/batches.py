"""A batch: the shard runs of one fan-out, read back from the output as one summary.

Shard runs write side by side into one OUT; each records its ``batch_id`` in
its run config and joins the lease on OUT that the batch holds (owner: the
batch id; ``store/lease.py``). The parent takes that lease first, cleans debris
of dead runs before and after (no shard cleans while others write) and
summarises the batch from the committed rows, so the summary is exactly what
the dataset holds, retried shards included.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audify_batch.model.checkpoint import read_card
from audify_batch.records import RecordingStatus, RunSummary
from audify_batch.run.shards import Shard
from audify_batch.store import schema as S
from audify_batch.store.lease import HeldLease, LeaseLostError, hold_lease, read_lease
from audify_batch.store.sink import ParquetSink

STATUS_RANK = {S.STATUS_LABELED: 2, RecordingStatus.PARTIAL: 2, S.STATUS_FAILED: 1, S.STATUS_SKIPPED: 0}


def output_sink(out: str, model_dir: str, storage_options: dict[str, Any] | None = None) -> ParquetSink:
    card = read_card(Path(model_dir))
    return ParquetSink(out, card.name, card.version, "batch", storage_options)


def attach_lease(sink: ParquetSink, lease: HeldLease, clean: bool) -> int:
    """Tie ``sink``'s commits to ``lease``; if it was taken from nobody, tidy up after dead runs.

    Only a lease taken from nobody proves every other writer dead: then runs left ``running``
    are marked ``interrupted`` and (``clean``) their debris removed, sparing the files of
    whoever holds the lease now (runs of the same batch that joined since). Returns the count
    of debris files removed.
    """
    sink.guard = lease.check
    if not lease.fresh:
        return 0
    live = lease.live_ids()
    sink.mark_interrupted(live)
    return sink.remove_debris(live) if clean else 0


def clean_output(
    out: str, model_dir: str, storage_options: dict[str, Any] | None = None, batch_id: str | None = None
) -> int:
    """Remove debris of dead runs of this model and mark them interrupted; returns the debris count.

    ``batch_id``: the caller (a fan-out parent) holds OUT's lease under this batch id; the files
    of the lease's holders (its shards still writing) are spared. Without it, this takes the
    lease itself (``OutputBusyError`` while another run writes to OUT).
    """
    sink = output_sink(out, model_dir, storage_options)
    if batch_id is None:
        with hold_lease(out, f"clean-{uuid.uuid4().hex[:8]}", storage_options) as lease:
            return attach_lease(sink, lease, clean=True)
    lease_now = read_lease(out, storage_options)
    if lease_now is None or lease_now.owner != batch_id or lease_now.is_dead(datetime.now(UTC)):
        raise LeaseLostError(f"{out}: the lease of batch {batch_id} is gone; not cleaning")
    live = {holder.id for holder in lease_now.holders}
    sink.mark_interrupted(live)
    return sink.remove_debris(live)


def batch_run_ids(sink: ParquetSink, batch_id: str) -> list[str]:
    runs = sink.read_runs().to_pylist()
    return sorted(r[S.RUN_ID] for r in runs if _batch_id(json.loads(r[S.CONFIG_JSON])) == batch_id)


def _batch_id(settings: dict[str, Any]) -> str | None:
    """The fan-out a run belonged to: ``shard.batch_id`` (flat ``batch_id`` in runs before 0.2)."""
    shard = settings.get("shard")
    return shard.get("batch_id") if isinstance(shard, dict) else settings.get("batch_id")


def _final_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per recording, the row that says most: labeled over failed over skipped, then the latest."""
    final: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (STATUS_RANK[r[S.STATUS]], r[S.FINISHED_AT], r[S.RUN_ID])):
        final[row[S.URI]] = row
    return final


def summarize_batch(
    out: str, model_dir: str, batch_id: str, wall_s: float, storage_options: dict[str, Any] | None = None
) -> RunSummary:
    """One summary over every shard run of ``batch_id``."""
    card = read_card(Path(model_dir))
    sink = ParquetSink(out, card.name, card.version, "batch", storage_options)
    run_ids = set(batch_run_ids(sink, batch_id))
    rows = [r for r in sink.read_recordings().to_pylist() if r[S.RUN_ID] in run_ids]
    final = _final_rows(rows)
    by_status = {status: [r for r in final.values() if r[S.STATUS] == status] for status in STATUS_RANK}
    labeled = by_status[S.STATUS_LABELED] + by_status[RecordingStatus.PARTIAL]
    return RunSummary(
        run_id=batch_id,
        out=out,
        model=f"{card.name} {card.version}",
        n_recordings=len(final),
        n_labeled=len(labeled),
        n_failed=len(by_status[S.STATUS_FAILED]),
        n_skipped=len(by_status[S.STATUS_SKIPPED]),
        n_segments=sum(r[S.N_SEGMENTS] or 0 for r in labeled),
        audio_s=sum(r[S.DURATION_S] or 0.0 for r in labeled),
        wall_s=wall_s,
        failures=tuple(sorted((r[S.URI], r[S.ERROR] or "") for r in by_status[S.STATUS_FAILED])),
        n_partial=len(by_status[RecordingStatus.PARTIAL]),
        warnings=tuple(
            sorted((r[S.URI], r[S.ERROR] or "cut short") for r in by_status[RecordingStatus.PARTIAL])
        ),
    )


@dataclass(frozen=True)
class ShardResult:
    shard: Shard
    attempt: int
    ok: bool
    detail: str = ""


# Launches the given shards at once, waits for all, and says how each ended.
LaunchShards = Callable[[list[Shard], int], list[ShardResult]]


def run_shards(shards: list[Shard], launch: LaunchShards, max_attempts: int) -> list[ShardResult]:
    """Run every shard, re-running only the failed ones, up to ``max_attempts`` rounds.

    Returns every attempt's result; a shard that never succeeded has only failed results.
    A re-run shard skips the recordings its failed attempt already committed.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    history: list[ShardResult] = []
    pending = list(shards)
    for attempt in range(1, max_attempts + 1):
        if not pending:
            break
        results = launch(pending, attempt)
        history += results
        done = {r.shard for r in results if r.ok}
        pending = [s for s in pending if s not in done]
    return history


def failed_shards(history: list[ShardResult]) -> list[Shard]:
    ok = {r.shard for r in history if r.ok}
    return sorted({r.shard for r in history if r.shard not in ok}, key=lambda s: s.index)
