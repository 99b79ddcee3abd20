"""The record one model step hands to the run: plain numpy arrays, no torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class TopK:
    """One model step's output, on the CPU: the top-K per segment, best first, and embeddings.

    A model with a second vocabulary (AudioSet) fills ``audioset_values`` and ``audioset_indices``
    (its top-K, indices into the card's ``audioset_labels``); a model with per-class thresholds fills
    ``detected`` (B, n_classes) booleans: the classes whose score passes their threshold, none when
    nothing known is there. ``None`` means the model has no such output.
    """

    values: np.ndarray  # float32 (B, k), descending per row
    indices: np.ndarray  # int64 (B, k), class indices into the card's labels
    embeddings: np.ndarray  # float32 (B, D)
    audioset_values: np.ndarray | None = None  # float32 (B, k2), descending per row
    audioset_indices: np.ndarray | None = None  # int64 (B, k2), into the card's audioset_labels
    detected: np.ndarray | None = None  # bool (B, n_classes)

    def __post_init__(self) -> None:
        if self.values.shape != self.indices.shape or self.values.ndim != 2:
            raise ValueError(f"values {self.values.shape} and indices {self.indices.shape} must be (B, k)")
        n = len(self.values)
        if self.embeddings.ndim != 2 or len(self.embeddings) != n:
            raise ValueError(f"embeddings {self.embeddings.shape} must be (B, D) for B = {n}")
        if (self.audioset_values is None) != (self.audioset_indices is None):
            raise ValueError("audioset_values and audioset_indices come together")
        if self.audioset_values is not None and self.audioset_indices is not None:
            shape = self.audioset_values.shape
            if shape != self.audioset_indices.shape or len(shape) != 2 or shape[0] != n:
                raise ValueError(f"audioset values {shape} and indices must be (B, k) for B = {n}")
        if self.detected is not None and (self.detected.ndim != 2 or len(self.detected) != n):
            raise ValueError(f"detected {self.detected.shape} must be (B, n_classes) for B = {n}")

    def __len__(self) -> int:
        return len(self.values)
