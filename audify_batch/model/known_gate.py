"""The known-sound gate: AudioSet evidence of whether any of the model's known sounds is there.

A logistic regression over the log of YAMNet's 521 AudioSet scores of a segment (its frozen
head, untouched by the ESC-50 fine-tuning) gives the probability that the segment holds one of
the model's classes rather than something else (speech, music, tones, noise, silence). Where it
is below ``min_probability``, ``detected`` is empty whatever the class scores. Fitted with the
per-class thresholds by ``training/thresholds.py``; stored in the model card.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class KnownSoundGate:
    """p(known) = sigmoid(weights . log(max(audioset_scores, floor_score)) + bias)."""

    weights: tuple[float, ...]  # one per AudioSet class
    bias: float
    min_probability: float  # below it, nothing known is there
    floor_score: float = 1e-4  # AudioSet scores below it count as this (log of 0 is -inf)

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError("a known-sound gate needs one weight per AudioSet class")
        if not all(math.isfinite(w) for w in (*self.weights, self.bias)):
            raise ValueError("a known-sound gate's weights and bias must be finite numbers")
        if not 0.0 < self.min_probability < 1.0:
            raise ValueError(f"min_probability must be in (0, 1), got {self.min_probability}")
        if not 0.0 < self.floor_score < 1.0:
            raise ValueError(f"floor_score must be in (0, 1), got {self.floor_score}")

    def known_probability(self, audioset_scores: torch.Tensor) -> torch.Tensor:
        """(B, n_audioset) scores -> (B,) probabilities that a known sound is there."""
        if audioset_scores.shape[-1] != len(self.weights):
            raise ValueError(
                f"the gate reads {len(self.weights)} AudioSet scores, got {audioset_scores.shape[-1]}"
            )
        weights = torch.tensor(self.weights, dtype=torch.float32, device=audioset_scores.device)
        features = audioset_scores.float().clamp(min=self.floor_score).log()
        return torch.sigmoid(features @ weights + self.bias)

    def passes(self, audioset_scores: torch.Tensor) -> torch.Tensor:
        """(B,) booleans: where a known sound may be there."""
        return self.known_probability(audioset_scores) >= self.min_probability

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KnownSoundGate:
        return cls(
            weights=tuple(float(w) for w in data["weights"]),
            bias=float(data["bias"]),
            min_probability=float(data["min_probability"]),
            floor_score=float(data.get("floor_score", cls.floor_score)),
        )
