"""Model families: which network a model card describes, and that family's architecture config.

``esc50-resnet`` is the 1.x model trained from scratch on ESC-50 (``network.ArchConfig``).
``yamnet`` is the AudioSet-pretrained YAMNet backbone (model/yamnet.py) with an ESC-50 head and
YAMNet's own AudioSet head (``YamnetArch``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from audify_batch.model.network import ArchConfig

FAMILY_RESNET = "esc50-resnet"
FAMILY_YAMNET = "yamnet"

COVERAGES = ("full", "patches")  # one pass over the whole segment, or 0.96 s patches averaged
ESC_ACTIVATIONS = ("softmax", "sigmoid")


@dataclass(frozen=True)
class YamnetArch:
    """The YAMNet-based model: backbone, an ESC-50 head on its embedding, the AudioSet head."""

    n_classes: int = 50
    n_audioset_classes: int = 521
    embedding_dim: int = 1024
    hidden_dim: int = 0  # 0: a linear ESC-50 head; else one hidden layer of this width
    dropout: float = 0.0  # before the ESC-50 head, in training
    coverage: str = "patches"
    # Patches: 0.96 s each, every patch_hop_s (YAMNet's own hop is 0.48 s; 0.96 s halves the cost
    # and keeps 89 % of its top-1 AudioSet labels). A full pass over 5 s is off-distribution for
    # YAMNet's AudioSet head (it answers "Music" to nearly everything).
    patch_hop_s: float = 0.96
    esc_activation: str = "softmax"
    # The last N of the backbone's 13 blocks fine-tuned for ESC-50, as copies: the AudioSet
    # head keeps reading YAMNet's own blocks, so its labels stay YAMNet's.
    tuned_blocks: int = 0
    # ESC-50 branches (tuned blocks + head), trained apart, their class scores averaged: an
    # ensemble over one shared trunk. 1: a single branch, as 2.0.0.
    esc_branches: int = 1

    def __post_init__(self) -> None:
        if self.n_classes < 2 or self.n_audioset_classes < 0 or self.embedding_dim <= 0:
            raise ValueError("need n_classes >= 2, n_audioset_classes >= 0, embedding_dim > 0")
        if self.hidden_dim < 0:
            raise ValueError(f"hidden_dim must be >= 0, got {self.hidden_dim}")
        if self.coverage not in COVERAGES:
            raise ValueError(f"coverage must be one of {COVERAGES}, not {self.coverage!r}")
        if self.esc_activation not in ESC_ACTIVATIONS:
            raise ValueError(f"esc_activation must be one of {ESC_ACTIVATIONS}")
        if not 0.01 <= self.patch_hop_s <= 0.96:
            raise ValueError(f"patch_hop_s must be in [0.01, 0.96], got {self.patch_hop_s}")
        if not 0 <= self.tuned_blocks <= 13:
            raise ValueError(f"tuned_blocks must be in 0..13, got {self.tuned_blocks}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.esc_branches < 1:
            raise ValueError(f"esc_branches must be >= 1, got {self.esc_branches}")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> YamnetArch:
        return cls(**data)  # type: ignore[arg-type]


Arch = ArchConfig | YamnetArch
ARCHS: dict[str, type[ArchConfig] | type[YamnetArch]] = {
    FAMILY_RESNET: ArchConfig,
    FAMILY_YAMNET: YamnetArch,
}
