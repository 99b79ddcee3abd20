"""The record one model step hands to the run: plain numpy arrays, no torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class TopK:
    """One model step's output, on the CPU: the top-K per segment, best first, and embeddings."""

    values: np.ndarray  # float32 (B, k), descending per row
    indices: np.ndarray  # int64 (B, k), class indices into the card's labels
    embeddings: np.ndarray  # float32 (B, D)

    def __post_init__(self) -> None:
        if self.values.shape != self.indices.shape or self.values.ndim != 2:
            raise ValueError(f"values {self.values.shape} and indices {self.indices.shape} must be (B, k)")
        if self.embeddings.ndim != 2 or len(self.embeddings) != len(self.values):
            raise ValueError(f"embeddings {self.embeddings.shape} must be (B, D) for B = {len(self.values)}")

    def __len__(self) -> int:
        return len(self.values)
