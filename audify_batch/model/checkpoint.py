"""Checkpoints: safetensors weights plus a JSON model card.

No pickle is ever loaded. The card names the weights file and its SHA-256;
loading checks the hash, the tensor names and shapes against the
architecture the card describes, and fails with ``CheckpointError``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from audify_batch.model.features import FrontendConfig
from audify_batch.model.network import ArchConfig, AudioClassifier

CARD_FILE = "model_card.json"
WEIGHTS_FILE = "model.safetensors"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "weights" / "default"


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, or its card and weights disagree."""


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    labels: tuple[str, ...]
    frontend: FrontendConfig
    arch: ArchConfig
    norm_mean_db: tuple[float, ...]
    norm_std_db: tuple[float, ...]
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    # The window the model labels, in seconds: the one home of the segment length. Cards
    # written before it was recorded are 5-second models.
    segment_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.segment_s > 0:
            raise CheckpointError(f"segment_s must be positive, got {self.segment_s}")
        if len(self.labels) != self.arch.n_classes:
            raise CheckpointError(
                f"card lists {len(self.labels)} labels but the head has {self.arch.n_classes} classes"
            )
        if not len(self.norm_mean_db) == len(self.norm_std_db) == self.frontend.n_mels:
            raise CheckpointError("normalisation statistics need one value per mel band")

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        data = json.loads(text)
        return cls(
            name=data["name"],
            version=data["version"],
            labels=tuple(data["labels"]),
            frontend=FrontendConfig(**data["frontend"]),
            arch=ArchConfig.from_dict(data["arch"]),
            norm_mean_db=tuple(data["norm_mean_db"]),
            norm_std_db=tuple(data["norm_std_db"]),
            training=data.get("training", {}),
            evaluation=data.get("evaluation", {}),
            weights_sha256=data.get("weights_sha256", ""),
            segment_s=float(data.get("segment_s", cls.segment_s)),
        )


def build_classifier(card: ModelCard) -> AudioClassifier:
    return AudioClassifier(
        card.frontend,
        card.arch,
        torch.tensor(card.norm_mean_db),
        torch.tensor(card.norm_std_db),
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_checkpoint(directory: Path, model: AudioClassifier, card: ModelCard) -> ModelCard:
    """Write weights and card; returns the card with the weights' hash filled in."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / WEIGHTS_FILE
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.net.state_dict().items()}
    save_file(state, str(weights_path), metadata={"name": card.name, "version": card.version})
    stamped = ModelCard(**{**card.__dict__, "weights_sha256": _sha256(weights_path)})
    (directory / CARD_FILE).write_text(stamped.to_json())
    return stamped


def read_card(directory: Path) -> ModelCard:
    card_path = Path(directory) / CARD_FILE
    if not card_path.is_file():
        raise CheckpointError(f"no model card at {card_path}")
    try:
        return ModelCard.from_json(card_path.read_text())
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"model card {card_path} is invalid: {error}") from error


def _check_state(card: ModelCard, state: dict[str, torch.Tensor], model: AudioClassifier) -> None:
    expected = {name: tuple(t.shape) for name, t in model.net.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(n for n in set(expected) & set(found) if expected[n] != found[n])
    if missing or extra or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:3]}")
        if extra:
            details.append(f"unexpected {extra[:3]}")
        if wrong:
            name = wrong[0]
            details.append(
                f"shape of {name} is {found[name]}, the card's architecture needs {expected[name]}"
            )
        raise CheckpointError(
            f"weights do not match the model card ({card.name} {card.version}): " + "; ".join(details)
        )


def load_checkpoint(directory: Path = DEFAULT_MODEL_DIR) -> tuple[AudioClassifier, ModelCard]:
    """Load a checkpoint for inference (eval mode, CPU)."""
    directory = Path(directory)
    card = read_card(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"no weights at {weights_path}")
    if card.weights_sha256 and _sha256(weights_path) != card.weights_sha256:
        raise CheckpointError(
            f"weights {weights_path} do not match the model card: SHA-256 differs from the card's"
        )
    model = build_classifier(card)
    try:
        state = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read weights {weights_path}: {error}") from error
    _check_state(card, state, model)
    model.net.load_state_dict(state)
    return model.eval(), card
