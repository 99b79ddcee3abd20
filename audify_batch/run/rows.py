"""Main-process bookkeeping: model outputs -> rows per recording -> Arrow tables.

A recording's segment rows are held until its outcome arrives; a failed
recording's rows are dropped, so a file that breaks half-way leaves no
partial output. A partial recording (cut short, see ``RecordingStatus``)
keeps the rows of what was readable and is listed among the warnings.
Finished recordings are committed to the sink in parts.

Memory stays flat in the length of a recording: once one holds
``spill_segments`` rows, they are streamed into a part of its own, written
as they come (``spill``); the part is debris until the recording ends and its
recordings row commits it, and is removed if the recording fails.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from audify_batch.ingest.loader import RecordingOutcome, SegmentChunk
from audify_batch.ingest.sources import RecordingRef
from audify_batch.model.checkpoint import ModelCard
from audify_batch.model.outputs import TopK
from audify_batch.records import Progress, RecordingStatus, RunSummary
from audify_batch.run.ports import Sink
from audify_batch.store import schema as S

SPILL_SEGMENTS = 4096  # rows of one recording held before they are streamed into its part


class PartStream(Protocol):
    """A part written as rows come (``ParquetSink.open_part``): debris until committed."""

    def write(self, segments: pa.Table) -> None: ...

    def commit(self, recordings: pa.Table) -> str: ...

    def abort(self) -> None: ...


@runtime_checkable
class StreamingSink(Protocol):
    """A sink that can stream a long recording's rows into a part of its own."""

    def open_part(self, schema: pa.Schema) -> PartStream: ...


Columns = dict[str, np.ndarray]  # one recording's rows: segment_index, start_sample, ... embedding


@dataclass
class _Pending:
    """Segment rows of one unfinished recording not yet written, as numpy columns per model
    batch (Arrow tables are built only to write them), and the part they stream into once
    there are many."""

    parts: list[Columns] = field(default_factory=list)
    n_rows: int = 0
    stream: PartStream | None = None

    def add(self, part: Columns) -> None:
        self.parts.append(part)
        self.n_rows += len(part["segment_index"])

    def take(self) -> Columns | None:
        """The rows held, concatenated (None: none), and hold none."""
        parts, self.parts, self.n_rows = self.parts, [], 0
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]} if parts else None


@dataclass
class RowCollector:
    refs: list[RecordingRef]
    card: ModelCard
    run_id: str
    config_hash: str
    spill_segments: int = SPILL_SEGMENTS
    pending: dict[int, _Pending] = field(default_factory=dict)
    ready: list[tuple[RecordingOutcome, Columns | None]] = field(default_factory=list)
    # finished recordings whose rows stream into a part: its last rows wait for its commit
    streamed: list[tuple[RecordingOutcome, PartStream, Columns | None]] = field(default_factory=list)
    status_counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    n_segments: int = 0
    audio_s: float = 0.0
    n_done: int = 0

    def __post_init__(self) -> None:
        if self.spill_segments <= 0:
            raise ValueError(f"spill_segments must be positive, got {self.spill_segments}")

    @cached_property
    def schema(self) -> pa.Schema:
        return S.segments_schema(self.card.arch.embedding_dim)

    @cached_property
    def _labels(self) -> np.ndarray:
        return np.asarray(self.card.labels, dtype=object)

    @property
    def ready_segments(self) -> int:
        return sum(len(rows["segment_index"]) for _, rows in self.ready if rows is not None)

    @property
    def held_segments(self) -> int:
        """Segment rows in memory: finished recordings' and unfinished ones'."""
        pending = sum(rows.n_rows for rows in self.pending.values())
        last = sum(len(rows["segment_index"]) for _, _, rows in self.streamed if rows is not None)
        return self.ready_segments + pending + last

    @property
    def has_ready(self) -> bool:
        return bool(self.ready or self.streamed)

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
            "sample_rate_hz": chunk.sample_rate_hz.numpy(),
            "top_values": outputs.values.astype(np.float32),
            "top_indices": outputs.indices.astype(np.int64),
            "embedding": outputs.embeddings.astype(np.float32),
        }
        for index in np.unique(recording):
            mask = recording == index  # indexing by a mask copies: nothing of the chunk is kept
            self.pending.setdefault(int(index), _Pending()).add({k: v[mask] for k, v in columns.items()})

    def _finish(self, outcome: RecordingOutcome) -> None:
        rows = self.pending.pop(outcome.index, None) or _Pending()
        self.n_done += 1
        self.status_counts[outcome.status] += 1
        if not RecordingStatus(outcome.status).has_segments:
            self.failures.append((self.refs[outcome.index].uri, outcome.error or "unknown error"))
            if rows.stream is not None:
                rows.stream.abort()  # a failed recording leaves no rows
            self.ready.append((outcome, None))
            return
        if outcome.status == RecordingStatus.PARTIAL:
            self.warnings.append((self.refs[outcome.index].uri, outcome.error or "cut short"))
        self.n_segments += outcome.n_segments
        self.audio_s += outcome.duration_s or 0.0
        if rows.stream is not None:
            self.streamed.append((outcome, rows.stream, rows.take()))
        else:
            self.ready.append((outcome, rows.take()))

    def spill(self, sink: Sink) -> None:
        """Stream the rows of each unfinished recording that holds ``spill_segments`` or more into
        its own part (opened on its first spill), and commit the streamed recordings that ended.

        A sink that cannot stream (no ``open_part``) gets whole recordings at ``commit``.
        """
        if not isinstance(sink, StreamingSink):
            return
        for index, rows in self.pending.items():
            if rows.n_rows >= self.spill_segments:
                if rows.stream is None:
                    rows.stream = sink.open_part(self.schema)
                rows.stream.write(self._segments_table([(index, rows.take())]))
        self._commit_streamed()

    def _commit_streamed(self) -> None:
        streamed, self.streamed = self.streamed, []
        for outcome, stream, rest in streamed:
            if rest is not None:
                stream.write(self._segments_table([(outcome.index, rest)]))
            stream.commit(self._recordings_table([(outcome, None)]))

    def commit(self, sink: Sink) -> None:
        """Commit the finished recordings: streamed ones in their own parts, the rest in one."""
        self._commit_streamed()
        if not self.ready:
            return
        ready, self.ready = self.ready, []
        segments = self._segments_table([(o.index, rows) for o, rows in ready if rows is not None])
        sink.write_part(segments, self._recordings_table(ready))

    def commit_skipped(self, sink: Sink, unchanged: list[RecordingRef]) -> None:
        if not unchanged:
            return
        self.status_counts[S.STATUS_SKIPPED] += len(unchanged)
        rows = [self._recording_row(ref, None, S.STATUS_SKIPPED) for ref in unchanged]
        sink.write_part(self.schema.empty_table(), pa.Table.from_pylist(rows, schema=S.RECORDINGS_SCHEMA))

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
            S.N_SEGMENTS: outcome.n_segments if outcome and RecordingStatus(status).has_segments else 0,
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

    def _segments_table(self, items: list[tuple[int, Columns | None]]) -> pa.Table:
        """Segment rows of recordings (by index into ``refs``) as one Arrow table."""
        held = [(index, rows) for index, rows in items if rows is not None]
        if not held:
            return self.schema.empty_table()
        cols = {key: np.concatenate([rows[key] for _, rows in held]) for key in held[0][1]}
        n, k = cols["top_indices"].shape
        refs = [self.refs[index] for index, rows in held for _ in range(len(rows["segment_index"]))]
        rate = cols["sample_rate_hz"]
        offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
        labels = self._labels[cols["top_indices"].ravel()]
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
        return pa.Table.from_pydict(arrays, schema=self.schema)

    def counts(self) -> dict[str, int]:
        """Recordings per status as the runs table counts them: a partial recording counts as
        labeled (its readable part was); ``status_counts`` keeps the two apart."""
        counts = dict(self.status_counts)
        partial = counts.pop(RecordingStatus.PARTIAL, 0)
        if partial:
            counts[S.STATUS_LABELED] = counts.get(S.STATUS_LABELED, 0) + partial
        return counts

    def progress(self, total: int, wall_s: float) -> Progress:
        return Progress(self.n_done, total, self.n_segments, self.audio_s, wall_s)

    def summary(self, run_id: str, out: str, model: str, n_recordings: int, wall_s: float) -> RunSummary:
        counts = self.status_counts
        return RunSummary(
            run_id,
            out,
            model,
            n_recordings,
            counts[S.STATUS_LABELED] + counts[RecordingStatus.PARTIAL],
            counts[S.STATUS_FAILED],
            counts[S.STATUS_SKIPPED],
            self.n_segments,
            self.audio_s,
            wall_s,
            tuple(self.failures),
            n_partial=counts[RecordingStatus.PARTIAL],
            warnings=tuple(self.warnings),
        )
