"""Main-process bookkeeping: model outputs -> rows per recording -> Arrow tables.

A recording's segment rows are held until its outcome arrives; a failed
recording's rows are dropped, so a file that breaks half-way leaves no
partial output. A partial recording (cut short, see ``RecordingStatus``)
keeps the rows of what was readable and is listed among the warnings.
Finished recordings are committed to the sink in parts.

Memory stays flat in the length of a recording: once one holds ``spill_bytes``
of rows (``SPILL_BYTES``: a budget in bytes, so a model with wider embeddings
holds fewer rows), they are streamed into a part of its own, written as they
come (``spill``); the part is debris until the recording ends and its
recordings row commits it, and is removed if the recording fails. Rows are
concatenated once, when their Arrow table is built.
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

# Bytes of one unfinished recording's rows (numpy columns; the embedding is most of them) held
# before they are streamed into its part, as one row group. Writing them costs about 2.7 times
# as much again for a moment (Arrow table, Parquet levels and pages, compression) on top of
# ~15 MiB for the writer itself, so the peak a spill adds is bounded, whatever the embedding
# width: 2 MiB is ~500 segments of a 1024-d model, ~1,900 of the 256-d ESC-50 model.
SPILL_BYTES = 2 << 20


class PartStream(Protocol):
    """A part written as rows come (``ParquetSink.open_part``): debris until committed."""

    def write(self, segments: pa.Table) -> None: ...

    def commit(self, recordings: pa.Table) -> str: ...

    def abort(self) -> None: ...


@runtime_checkable
class StreamingSink(Protocol):
    """A sink that can stream a long recording's rows into a part of its own."""

    def open_part(self, schema: pa.Schema) -> PartStream: ...


Columns = dict[str, np.ndarray]  # rows of one recording: segment_index, start_sample, ... embedding
Rows = list[Columns]  # a recording's rows as they came, one Columns per model batch ([]: none)


def _optional_columns(outputs: TopK) -> Columns:
    """The model outputs only some models have (see ``TopK``), as row columns."""
    columns: Columns = {}
    if outputs.detected is not None:
        columns["detected"] = outputs.detected.astype(bool)
    if outputs.audioset_values is not None and outputs.audioset_indices is not None:
        columns["audioset_values"] = outputs.audioset_values.astype(np.float32)
        columns["audioset_indices"] = outputs.audioset_indices.astype(np.int64)
    return columns


def _mask_to_lists(mask: np.ndarray, labels: np.ndarray) -> pa.Array:
    """(n, n_classes) booleans -> one list of label names per row, in class order."""
    rows, classes = np.nonzero(mask)
    offsets = np.zeros(len(mask) + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=len(mask)), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(labels[classes], pa.string()))


def n_rows(rows: Rows) -> int:
    return sum(len(part["segment_index"]) for part in rows)


def n_bytes(rows: Rows) -> int:
    """Bytes of the numpy columns of ``rows``."""
    return sum(column.nbytes for part in rows for column in part.values())


@dataclass
class _Pending:
    """Segment rows of one unfinished recording not yet written, as numpy columns per model
    batch (concatenated only into the Arrow table that writes them), and the part they
    stream into once there are many."""

    parts: Rows = field(default_factory=list)
    n_rows: int = 0
    n_bytes: int = 0
    stream: PartStream | None = None

    def add(self, part: Columns) -> None:
        self.parts.append(part)
        self.n_rows += n_rows([part])
        self.n_bytes += n_bytes([part])

    def take(self) -> Rows:
        """The rows held, and hold none."""
        parts, self.parts, self.n_rows, self.n_bytes = self.parts, [], 0, 0
        return parts


@dataclass
class RowCollector:
    refs: list[RecordingRef]
    card: ModelCard
    run_id: str
    config_hash: str
    spill_bytes: int = SPILL_BYTES
    pending: dict[int, _Pending] = field(default_factory=dict)
    ready: list[tuple[RecordingOutcome, Rows]] = field(default_factory=list)
    # finished recordings whose rows stream into a part: its last rows wait for its commit
    streamed: list[tuple[RecordingOutcome, PartStream, Rows]] = field(default_factory=list)
    status_counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    n_segments: int = 0
    audio_s: float = 0.0
    n_done: int = 0

    def __post_init__(self) -> None:
        if self.spill_bytes <= 0:
            raise ValueError(f"spill_bytes must be positive, got {self.spill_bytes}")

    @cached_property
    def schema(self) -> pa.Schema:
        return S.segments_schema(self.card.arch.embedding_dim)

    @cached_property
    def _labels(self) -> np.ndarray:
        return np.asarray(self.card.labels, dtype=object)

    @property
    def ready_segments(self) -> int:
        return sum(n_rows(rows) for _, rows in self.ready)

    @property
    def held_segments(self) -> int:
        """Segment rows in memory: finished recordings' and unfinished ones'."""
        pending = sum(rows.n_rows for rows in self.pending.values())
        return self.ready_segments + pending + sum(n_rows(rows) for _, _, rows in self.streamed)

    @property
    def held_bytes(self) -> int:
        """Bytes of the segment rows in memory (numpy columns), finished recordings' and unfinished ones'."""
        pending = sum(rows.n_bytes for rows in self.pending.values())
        finished = sum(n_bytes(rows) for _, rows in self.ready)
        return pending + finished + sum(n_bytes(rows) for _, _, rows in self.streamed)

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
            "top_values": outputs.values.astype(np.float32, copy=False),
            "top_indices": outputs.indices.astype(np.int64, copy=False),
            "embedding": outputs.embeddings.astype(np.float32, copy=False),
            **_optional_columns(outputs),
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
            self.ready.append((outcome, []))
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
        """Stream the rows of each unfinished recording that holds ``spill_bytes`` or more into
        its own part (opened on its first spill), and commit the streamed recordings that ended.

        A sink that cannot stream (no ``open_part``) gets whole recordings at ``commit``.
        """
        if not isinstance(sink, StreamingSink):
            return
        for index, rows in self.pending.items():
            if rows.n_bytes >= self.spill_bytes:
                if rows.stream is None:
                    rows.stream = sink.open_part(self.schema)
                rows.stream.write(self._segments_table([(index, rows.take())]))
        self._commit_streamed()

    def _commit_streamed(self) -> None:
        streamed, self.streamed = self.streamed, []
        for outcome, stream, rest in streamed:
            if rest:
                stream.write(self._segments_table([(outcome.index, rest)]))
            stream.commit(self._recordings_table([(outcome, None)]))

    def commit(self, sink: Sink) -> None:
        """Commit the finished recordings: streamed ones in their own parts, the rest in one."""
        self._commit_streamed()
        if not self.ready:
            return
        ready, self.ready = self.ready, []
        segments = self._segments_table([(o.index, rows) for o, rows in ready])
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

    def _segments_table(self, items: list[tuple[int, Rows]]) -> pa.Table:
        """Segment rows of recordings (by index into ``refs``) as one Arrow table; each column
        is concatenated once, here."""
        held = [(index, part) for index, rows in items for part in rows]
        if not held:
            return self.schema.empty_table()
        cols = {key: np.concatenate([part[key] for _, part in held]) for key in held[0][1]}
        n, k = cols["top_indices"].shape
        refs = [self.refs[index] for index, part in held for _ in range(len(part["segment_index"]))]
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
            **self._model_extras(cols, n),
            **{name: pa.array([value] * n) for name, value in constant.items()},
        }
        return pa.Table.from_pydict(arrays, schema=self.schema)

    def _model_extras(self, cols: Columns, n: int) -> dict[str, pa.Array]:
        """``detected`` and the AudioSet top-K, null where the model has no such output."""
        string_list = pa.list_(pa.string())
        extras = {
            S.DETECTED: pa.nulls(n, string_list),
            S.AUDIOSET_LABELS: pa.nulls(n, string_list),
            S.AUDIOSET_SCORES: pa.nulls(n, pa.list_(pa.float32())),
        }
        if "detected" in cols:
            extras[S.DETECTED] = _mask_to_lists(cols["detected"], self._labels)
        if "audioset_indices" in cols:
            indices = cols["audioset_indices"]
            k = indices.shape[1]
            offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
            names = np.asarray(self.card.audioset_labels, dtype=object)[indices.ravel()]
            extras[S.AUDIOSET_LABELS] = pa.ListArray.from_arrays(offsets, pa.array(names, pa.string()))
            scores = pa.array(cols["audioset_values"].astype(np.float32).ravel())
            extras[S.AUDIOSET_SCORES] = pa.ListArray.from_arrays(offsets, scores)
        return extras

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
