"""Fakes for the run's ports (audify_batch/run/ports.py): a model scored from waveform energy,
an in-memory sink, a model gate that logs, all writing to one shared event log."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from audify_batch.ingest.loader import SegmentChunk
from audify_batch.model.checkpoint import ModelCard
from audify_batch.model.features import FrontendConfig
from audify_batch.model.network import ArchConfig
from audify_batch.model.outputs import TopK
from audify_batch.records import RecordingStatus
from audify_batch.run.rows import RowCollector
from audify_batch.store import schema as S
from audify_batch.store.sink import FileKey

# Each label stands for a loudness: its RMS level. The fake model ranks labels by how close
# a segment's RMS is to theirs.
LOUDNESS_LABELS = ("silence", "quiet", "medium", "loud")
LABEL_RMS = np.array([0.0, 0.05, 0.15, 0.3])
FAKE_EMBEDDING_DIM = 2  # (rms, peak)
LABELED_STATUSES = (S.STATUS_LABELED, RecordingStatus.PARTIAL)  # what a rerun skips when unchanged


def fake_card(segment_s: float = 1.0) -> ModelCard:
    """A card for the fake model: the loudness labels, 16 kHz, a 2-wide embedding."""
    arch = ArchConfig(
        n_classes=len(LOUDNESS_LABELS),
        stem_channels=2,
        stage_channels=(FAKE_EMBEDDING_DIM,),
        blocks_per_stage=(1,),
    )
    n_mels = FrontendConfig().n_mels
    return ModelCard(
        name="fake-loudness",
        version="0.0",
        labels=LOUDNESS_LABELS,
        frontend=FrontendConfig(),
        arch=arch,
        norm_mean_db=tuple([0.0] * n_mels),
        norm_std_db=tuple([1.0] * n_mels),
        segment_s=segment_s,
    )


def loudness_scores(rms: np.ndarray) -> np.ndarray:
    """(B, n_labels) scores in (0, 1]: higher the closer a segment's RMS is to the label's."""
    return 1.0 / (1.0 + 10.0 * np.abs(rms[:, None] - LABEL_RMS[None, :]))


@dataclass
class FakeModel:
    """A deterministic ``Model``: scores from waveform energy, embedding (rms, peak)."""

    card: ModelCard = field(default_factory=fake_card)
    events: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)

    def predict(self, waveforms: torch.Tensor, top_k: int) -> TopK:
        self.events.append("predict")
        self.batch_sizes.append(len(waveforms))
        audio = waveforms.numpy().astype(np.float64)
        rms = np.sqrt(np.mean(audio**2, axis=1))
        scores = loudness_scores(rms)
        order = np.argsort(-scores, axis=1, kind="stable")[:, : min(top_k, scores.shape[1])]
        embeddings = np.stack([rms, np.abs(audio).max(axis=1)], axis=1)
        return TopK(
            np.take_along_axis(scores, order, axis=1).astype(np.float32),
            order.astype(np.int64),
            embeddings.astype(np.float32),
        )


@dataclass
class LoggingGate:
    """A ``ModelGate`` that logs 'enter' and 'exit' and knows whether it is held."""

    events: list[str] = field(default_factory=list)
    entries: int = 0
    held: bool = False

    def __call__(self) -> AbstractContextManager[object]:
        return self._hold()

    @contextmanager
    def _hold(self) -> Iterator[None]:
        self.entries += 1
        self.held = True
        self.events.append("enter")
        try:
            yield
        finally:
            self.held = False
            self.events.append("exit")


@dataclass
class LoggingCollector(RowCollector):
    """A ``RowCollector`` that logs each 'add' (its bookkeeping) to ``events``."""

    events: list[str] = field(default_factory=list)

    def add(self, chunk: SegmentChunk, outputs: TopK | None) -> None:
        self.events.append("add")
        super().add(chunk, outputs)


@dataclass
class InMemorySink:
    """A ``Sink`` that keeps every committed part and run row in lists."""

    segment_parts: list[pa.Table] = field(default_factory=list)
    recording_parts: list[pa.Table] = field(default_factory=list)
    run_rows: list[dict[str, Any]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def remove_debris(self) -> int:
        return 0

    def labeled_keys(self, config_hash: str) -> dict[str, FileKey]:
        """As ``ParquetSink.labeled_keys`` (``sql/labeled_keys.sql`` over the ``recordings`` view):
        per uri the latest failed row or labeled-or-partial row whose part holds all its segments;
        it counts when labeled or partial with ``config_hash``, keyed with its content fingerprint."""
        latest: dict[str, dict[str, Any]] = {}
        for row in sorted(self._committed_rows(), key=lambda r: (r[S.FINISHED_AT], r[S.RUN_ID])):
            latest[row[S.URI]] = row
        return {
            uri: FileKey(uri, row[S.SIZE_BYTES], row[S.MTIME_S], row[S.FINGERPRINT])
            for uri, row in latest.items()
            if row[S.STATUS] in LABELED_STATUSES and row[S.CONFIG_HASH] == config_hash
        }

    def _committed_rows(self) -> list[dict[str, Any]]:
        """Recordings rows that are a recording's state: failed, or labeled or partial with every
        one of its segments in the same part (skipped rows never are)."""
        rows = []
        for segments, recordings in zip(self.segment_parts, self.recording_parts, strict=True):
            keys = [(r[S.URI], r[S.RECORDING_ID], r[S.RUN_ID]) for r in segments.to_pylist()]
            found = Counter(keys)
            for row in recordings.to_pylist():
                held = found[(row[S.URI], row[S.RECORDING_ID], row[S.RUN_ID])]
                complete = row[S.STATUS] in LABELED_STATUSES and (row[S.N_SEGMENTS] or 0) <= held
                if row[S.STATUS] == S.STATUS_FAILED or complete:
                    rows.append(row)
        return rows

    def write_part(self, segments: pa.Table, recordings: pa.Table) -> str:
        self.events.append("write_part")
        self.segment_parts.append(segments)
        self.recording_parts.append(recordings)
        return f"part-{len(self.recording_parts) - 1:05d}"

    def write_run(self, run_row: dict[str, Any]) -> None:
        self.run_rows.append(dict(run_row))

    def segments(self) -> pa.Table:
        """Every committed segment row, in commit order."""
        return pa.concat_tables(self.segment_parts) if self.segment_parts else pa.table({})

    def recordings(self) -> pa.Table:
        """Every committed recordings row, in commit order."""
        if not self.recording_parts:
            return S.RECORDINGS_SCHEMA.empty_table()
        return pa.concat_tables(self.recording_parts)
