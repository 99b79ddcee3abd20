"""What a labeling run needs from its source, its model and its output, as structural protocols.

The run loop depends on these, not on fsspec, torch modules or Parquet: the real
implementations (``ArchiveSource`` in run/pipeline.py, ``TorchModel`` in
model/inference.py, ``ParquetSink`` in store/sink.py) satisfy them as they are,
and tests pass fakes (tests/fakes.py).
"""

from __future__ import annotations

from typing import Any, Protocol

import pyarrow as pa
import torch

from audify_batch.ingest.sources import RecordingRef
from audify_batch.model.checkpoint import ModelCard
from audify_batch.model.outputs import TopK
from audify_batch.store.sink import FileKey


class Source(Protocol):
    """Finds the recordings a run is about."""

    def recordings(self) -> list[RecordingRef]:
        """Every recording of this run (after time range and shard filters), in a stable order."""
        ...


class Model(Protocol):
    """One model step: segment waveforms in, top-K classes and embeddings out (numpy, on the CPU)."""

    @property
    def card(self) -> ModelCard:
        """Name, version, labels (the meaning of ``TopK.indices``) and embedding size."""
        ...

    def predict(self, waveforms: torch.Tensor, top_k: int) -> TopK:
        """Scores of a (B, window) float32 batch at the model rate; B > 0."""
        ...


class Sink(Protocol):
    """The one writer of a run's output."""

    def remove_debris(self) -> int:
        """Delete what a killed run left half-written; returns how many files."""
        ...

    def labeled_keys(self, config_hash: str) -> dict[str, FileKey]:
        """Recordings already labeled with these settings, by URI."""
        ...

    def write_part(self, segments: pa.Table, recordings: pa.Table) -> str:
        """Commit segment rows and the recordings rows that make them visible; returns the part name."""
        ...

    def write_run(self, run_row: dict[str, Any]) -> None:
        """Record the run's current state (one row of the runs table)."""
        ...
