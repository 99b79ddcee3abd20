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
from torch import nn

from audify_batch.model.families import ARCHS, FAMILY_RESNET, FAMILY_YAMNET, Arch, YamnetArch
from audify_batch.model.features import FrontendConfig
from audify_batch.model.known_gate import KnownSoundGate
from audify_batch.model.network import AudioClassifier, Network

CARD_FILE = "model_card.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# The shipped models by name (``--model default``, ``--model fast``); anything else is a folder.
MODEL_ALIASES = {"default": WEIGHTS_DIR / "default", "fast": WEIGHTS_DIR / "fast"}
DEFAULT_MODEL_DIR = MODEL_ALIASES["default"]
FAST_MODEL_DIR = MODEL_ALIASES["fast"]


def resolve_model_dir(model: str | Path) -> Path:
    """The checkpoint folder of ``--model``: a shipped model's name, or a folder (``./default``
    for a folder that happens to be named like a shipped model)."""
    return MODEL_ALIASES.get(str(model), Path(model))


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, or its card and weights disagree."""


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    labels: tuple[str, ...]
    frontend: FrontendConfig
    arch: Arch
    norm_mean_db: tuple[float, ...]
    norm_std_db: tuple[float, ...]
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    # The window the model labels, in seconds: the one home of the segment length. Cards
    # written before it was recorded are 5-second models.
    segment_s: float = 5.0
    # Which network the card describes (``arch`` is that family's config); 1.x cards are resnets.
    family: str = FAMILY_RESNET
    # The second vocabulary (AudioSet's 521 display names) where the model has that head.
    audioset_labels: tuple[str, ...] = ()
    # Per-class score thresholds of ``detected`` (one per label); empty: the model detects nothing.
    thresholds: tuple[float, ...] = ()
    # AudioSet evidence that nothing known is there: when a segment's top AudioSet label is one
    # of these (e.g. Silence, Speech, Music) with at least ``abstain_min_score``, ``detected`` is
    # empty whatever the ESC-50 scores (training/thresholds.py fits both).
    abstain_audioset: tuple[str, ...] = ()
    abstain_min_score: float = 0.5
    # AudioSet evidence that one of the known sounds is there at all (``known_gate``): below its
    # ``min_probability``, ``detected`` is empty. None: no gate (cards before 2.0.1).
    known_gate: KnownSoundGate | None = None

    def __post_init__(self) -> None:
        if not self.segment_s > 0:
            raise CheckpointError(f"segment_s must be positive, got {self.segment_s}")
        if len(self.labels) != self.arch.n_classes:
            raise CheckpointError(
                f"card lists {len(self.labels)} labels but the head has {self.arch.n_classes} classes"
            )
        if self.family not in ARCHS:
            raise CheckpointError(f"unknown model family {self.family!r}; known: {sorted(ARCHS)}")
        if not isinstance(self.arch, ARCHS[self.family]):
            raise CheckpointError(f"a {self.family} card needs a {ARCHS[self.family].__name__} arch")
        norms = (len(self.norm_mean_db), len(self.norm_std_db))
        if self.family == FAMILY_RESNET and norms != (self.frontend.n_mels,) * 2:
            raise CheckpointError("normalisation statistics need one value per mel band")
        if self.thresholds and len(self.thresholds) != len(self.labels):
            raise CheckpointError(f"{len(self.thresholds)} thresholds for {len(self.labels)} labels")
        unknown = sorted(set(self.abstain_audioset) - set(self.audioset_labels))
        if unknown:
            raise CheckpointError(f"abstain_audioset names labels the AudioSet head lacks: {unknown[:3]}")
        n_audioset = getattr(self.arch, "n_audioset_classes", 0)
        if len(self.audioset_labels) != n_audioset:
            raise CheckpointError(
                f"card lists {len(self.audioset_labels)} AudioSet labels, the head has {n_audioset}"
            )
        if self.known_gate is not None and not self.thresholds:
            raise CheckpointError("a known-sound gate needs per-class thresholds: it only empties `detected`")
        if self.known_gate is not None and len(self.known_gate.weights) != n_audioset:
            raise CheckpointError(
                f"the known-sound gate reads {len(self.known_gate.weights)} AudioSet scores, "
                f"the head has {n_audioset}"
            )

    @property
    def embedding_dim(self) -> int:
        return self.arch.embedding_dim

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        data = json.loads(text)
        family = data.get("family", FAMILY_RESNET)
        if family not in ARCHS:
            raise ValueError(f"unknown model family {family!r}; known: {sorted(ARCHS)}")
        return cls(
            name=data["name"],
            version=data["version"],
            labels=tuple(data["labels"]),
            frontend=FrontendConfig(**data["frontend"]),
            arch=ARCHS[family].from_dict(data["arch"]),
            norm_mean_db=tuple(data["norm_mean_db"]),
            norm_std_db=tuple(data["norm_std_db"]),
            training=data.get("training", {}),
            evaluation=data.get("evaluation", {}),
            weights_sha256=data.get("weights_sha256", ""),
            segment_s=float(data.get("segment_s", cls.segment_s)),
            family=family,
            audioset_labels=tuple(data.get("audioset_labels", ())),
            thresholds=tuple(float(t) for t in data.get("thresholds", ())),
            abstain_audioset=tuple(data.get("abstain_audioset", ())),
            abstain_min_score=float(data.get("abstain_min_score", cls.abstain_min_score)),
            known_gate=_gate(data.get("known_gate")),
        )


def _gate(data: Any) -> KnownSoundGate | None:
    if data is None:
        return None
    try:
        return KnownSoundGate.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"the card's known_gate is not valid: {error}") from None


def build_classifier(card: ModelCard) -> Network:
    """The untrained network a card describes (its family's class)."""
    if isinstance(card.arch, YamnetArch):
        from audify_batch.model.yamnet_classifier import YamnetClassifier

        return YamnetClassifier(card.arch)
    return AudioClassifier(
        card.frontend,
        card.arch,
        torch.tensor(card.norm_mean_db),
        torch.tensor(card.norm_std_db),
    )


def _weights_of(model: Network) -> nn.Module:
    """The module whose state the weights file holds: the resnet's ``net`` (its frontend is
    computed from the card), the whole YAMNet model (its frontend's mel matrix is a weight)."""
    return model.net if isinstance(model, AudioClassifier) else model


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stored(card: ModelCard, name: str, tensor: torch.Tensor) -> torch.Tensor:
    """How a tensor is stored: YAMNet-family kernels as float16 (half the file; its parity with
    the TFLite model holds, see weights/yamnet/README.md), everything else as it is. Loading
    casts back to float32."""
    if card.family == FAMILY_YAMNET and tensor.dim() >= 2 and not name.startswith("frontend."):
        return tensor.half()
    return tensor


def save_checkpoint(directory: Path, model: Network, card: ModelCard) -> ModelCard:
    """Write weights and card; returns the card with the weights' hash filled in."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / WEIGHTS_FILE
    weights = _weights_of(model).state_dict()
    state = {
        name: _stored(card, name, tensor.detach().cpu()).contiguous() for name, tensor in weights.items()
    }
    save_file(state, str(weights_path), metadata={"name": card.name, "version": card.version})
    stamped = ModelCard(**{**card.__dict__, "weights_sha256": _sha256(weights_path)})
    (directory / CARD_FILE).write_text(stamped.to_json())
    return stamped


def read_card(directory: str | Path) -> ModelCard:
    card_path = resolve_model_dir(directory) / CARD_FILE
    if not card_path.is_file():
        raise CheckpointError(f"no model card at {card_path}")
    try:
        return ModelCard.from_json(card_path.read_text())
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"model card {card_path} is invalid: {error}") from error


def _check_state(card: ModelCard, state: dict[str, torch.Tensor], model: Network) -> None:
    expected = {name: tuple(t.shape) for name, t in _weights_of(model).state_dict().items()}
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


def load_checkpoint(directory: str | Path = DEFAULT_MODEL_DIR) -> tuple[Network, ModelCard]:
    """Load a checkpoint (a folder, or a shipped model's name) for inference (eval mode, CPU)."""
    directory = resolve_model_dir(directory)
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
    _weights_of(model).load_state_dict({name: tensor.float() for name, tensor in state.items()})
    return model.eval(), card
