"""Main-process bookkeeping: model outputs -> rows per recording -> Arrow tables.

A recording's segment rows are held until its outcome arrives; a failed
recording's rows are dropped, so a file that breaks half-way leaves no
partial output. Finished recordings are committed to the sink in parts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from audify_batch.ingest.loader import RecordingOutcome, SegmentChunk
from audify_batch.ingest.sources import RecordingRef
from audify_batch.model.checkpoint import ModelCard
from audify_batch.model.outputs import TopK
from audify_batch.records import Progress, RunSummary
from audify_batch.run.ports import Sink
from audify_batch.store import schema as S


@dataclass
class _Rows:
    """Segment rows of one recording, as numpy arrays per model batch."""

    parts: list[dict[str, np.ndarray]] = field(default_factory=list)

    def add(self, part: dict[str, np.ndarray]) -> None:
        self.parts.append(part)

    def merged(self) -> dict[str, np.ndarray]:
        return {key: np.concatenate([p[key] for p in self.parts]) for key in self.parts[0]}


@dataclass
class RowCollector:
    refs: list[RecordingRef]
    card: ModelCard
    run_id: str
    config_hash: str
    pending: dict[int, _Rows] = field(default_factory=dict)
    ready: list[tuple[RecordingOutcome, dict[str, np.ndarray] | None]] = field(default_factory=list)
    status_counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    n_segments: int = 0
    audio_s: float = 0.0
    n_done: int = 0

    @property
    def ready_segments(self) -> int:
        return sum(len(rows["segment_index"]) for _, rows in self.ready if rows is not None)

    @property
    def has_ready(self) -> bool:
        return bool(self.ready)

    def add(self, chunk: SegmentChunk, outputs: TopK | None) -> None:
        """Hold the chunk's segment rows (``outputs``: the model's, one per segment) and
        finish the recordings it closes. ``outputs`` is ``None`` only for a chunk without segments."""
        if len(chunk):
            if outputs is None or len(outputs) != len(chunk):
                got = "none" if outputs is None else len(outputs)
                raise ValueError(f"chunk of {len(chunk)} segments needs as many model outputs, got {got}")
            self._add_rows(chunk, outputs)
        for outcome in chunk.finished:
            self._finish(outcome)

    def _add_rows(self, chunk: SegmentChunk, outputs: TopK) -> None:
        recording = chunk.recording_index.numpy()
        columns = {
            "segment_index": chunk.segment_index.numpy(),
            "start_sample": chunk.start_sample.numpy(),
            "end_sample": chunk.end_sample.numpy(),
            "top_values": outputs.values.astype(np.float32),
            "top_indices": outputs.indices.astype(np.int64),
            "embedding": outputs.embeddings.astype(np.float32),
        }
        for index in np.unique(recording):
            mask = recording == index
            self.pending.setdefault(int(index), _Rows()).add({k: v[mask] for k, v in columns.items()})

    def _finish(self, outcome: RecordingOutcome) -> None:
        rows = self.pending.pop(outcome.index, None)
        self.n_done += 1
        self.status_counts[outcome.status] += 1
        if outcome.status != S.STATUS_LABELED:
            self.failures.append((self.refs[outcome.index].uri, outcome.error or "unknown error"))
            self.ready.append((outcome, None))
            return
        merged = rows.merged() if rows else None
        self.n_segments += outcome.n_segments
        self.audio_s += outcome.duration_s or 0.0
        self.ready.append((outcome, merged))

    def commit(self, sink: Sink) -> None:
        if not self.ready:
            return
        ready, self.ready = self.ready, []
        segments = self._segments_table([(o, rows) for o, rows in ready if rows is not None])
        sink.write_part(segments, self._recordings_table(ready))

    def commit_skipped(self, sink: Sink, unchanged: list[RecordingRef]) -> None:
        if not unchanged:
            return
        self.status_counts[S.STATUS_SKIPPED] += len(unchanged)
        rows = [self._recording_row(ref, None, S.STATUS_SKIPPED) for ref in unchanged]
        sink.write_part(self._segments_table([]), pa.Table.from_pylist(rows, schema=S.RECORDINGS_SCHEMA))

    def _recording_row(
        self, ref: RecordingRef, outcome: RecordingOutcome | None, status: str
    ) -> dict[str, Any]:
        return {
            S.RECORDING_ID: ref.recording_id,
            S.URI: ref.uri,
            S.SIZE_BYTES: ref.size_bytes,
            S.MTIME_S: ref.mtime_s,
            S.FINGERPRINT: outcome.fingerprint if outcome else None,
            S.SAMPLE_RATE_HZ: outcome.sample_rate_hz if outcome else None,
            S.CHANNELS: outcome.channels if outcome else None,
            S.DURATION_S: outcome.duration_s if outcome else None,
            S.N_SEGMENTS: outcome.n_segments if outcome and status == S.STATUS_LABELED else 0,
            S.STATUS: status,
            S.ERROR: outcome.error if outcome else None,
            S.MODEL_NAME: self.card.name,
            S.MODEL_VERSION: self.card.version,
            S.CONFIG_HASH: self.config_hash,
            S.RUN_ID: self.run_id,
            S.FINISHED_AT: datetime.now(UTC),
        }

    def _recordings_table(self, ready: list[tuple[RecordingOutcome, Any]]) -> pa.Table:
        rows = [self._recording_row(self.refs[o.index], o, o.status) for o, _ in ready]
        return pa.Table.from_pylist(rows, schema=S.RECORDINGS_SCHEMA)

    def _segments_table(self, items: list[tuple[RecordingOutcome, dict[str, np.ndarray]]]) -> pa.Table:
        schema = S.segments_schema(self.card.arch.embedding_dim)
        if not items:
            return schema.empty_table()
        cols = {key: np.concatenate([rows[key] for _, rows in items]) for key in items[0][1]}
        n, k = cols["top_indices"].shape
        refs = [self.refs[o.index] for o, rows in items for _ in range(len(rows["segment_index"]))]
        rate = np.concatenate([np.full(len(r["segment_index"]), o.sample_rate_hz) for o, r in items])
        offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
        labels = np.asarray(self.card.labels, dtype=object)[cols["top_indices"].ravel()]
        constant = {
            S.MODEL_NAME: self.card.name,
            S.MODEL_VERSION: self.card.version,
            S.CONFIG_HASH: self.config_hash,
            S.RUN_ID: self.run_id,
        }
        arrays = {
            S.RECORDING_ID: pa.array([r.recording_id for r in refs]),
            S.URI: pa.array([r.uri for r in refs]),
            S.SEGMENT_INDEX: pa.array(cols["segment_index"].astype(np.int32)),
            S.START_S: pa.array(cols["start_sample"] / rate),
            S.END_S: pa.array(cols["end_sample"] / rate),
            S.START_SAMPLE: pa.array(cols["start_sample"]),
            S.END_SAMPLE: pa.array(cols["end_sample"]),
            S.LABELS: pa.ListArray.from_arrays(offsets, pa.array(labels, pa.string())),
            S.CONFIDENCES: pa.ListArray.from_arrays(offsets, pa.array(cols["top_values"].ravel())),
            S.EMBEDDING: pa.FixedSizeListArray.from_arrays(
                pa.array(cols["embedding"].ravel()), cols["embedding"].shape[1]
            ),
            **{name: pa.array([value] * n) for name, value in constant.items()},
        }
        return pa.Table.from_pydict(arrays, schema=schema)

    def counts(self) -> dict[str, int]:
        return dict(self.status_counts)

    def progress(self, total: int, wall_s: float) -> Progress:
        return Progress(self.n_done, total, self.n_segments, self.audio_s, wall_s)

    def summary(self, run_id: str, out: str, model: str, n_recordings: int, wall_s: float) -> RunSummary:
        counts = self.status_counts
        return RunSummary(
            run_id,
            out,
            model,
            n_recordings,
            counts[S.STATUS_LABELED],
            counts[S.STATUS_FAILED],
            counts[S.STATUS_SKIPPED],
            self.n_segments,
            self.audio_s,
            wall_s,
            tuple(self.failures),
        )
