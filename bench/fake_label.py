"""``audify label`` with a fast stand-in model of any embedding width, for memory benchmarks.

    .venv/bin/python -m bench.fake_label --embedding-dim 1024 -- label SOURCE --out OUT

Everything but the model is the real run (sources, DataLoader workers, decoding, row
bookkeeping, the Parquet sink). The model scores a segment from its energy and returns a
pseudo-random embedding (incompressible, like a real one) in a few microseconds, so a
100-hour recording is labeled in minutes and the memory measured is the pipeline's.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from audify_batch.cli.main import main as audify_main
from audify_batch.model.checkpoint import ModelCard
from audify_batch.model.features import FrontendConfig
from audify_batch.model.inference import Precision
from audify_batch.model.network import ArchConfig
from audify_batch.model.outputs import TopK
from audify_batch.run import pipeline

N_LABELS = 50


def wide_card(embedding_dim: int) -> ModelCard:
    """A 50-label, 5-second, 16 kHz card whose embedding is ``embedding_dim`` wide."""
    arch = ArchConfig(
        n_classes=N_LABELS, stem_channels=1, stage_channels=(embedding_dim,), blocks_per_stage=(1,)
    )
    n_mels = FrontendConfig().n_mels
    return ModelCard(
        name=f"bench-fake-{embedding_dim}d",
        version="0.0",
        labels=tuple(f"label{i:02d}" for i in range(N_LABELS)),
        frontend=FrontendConfig(),
        arch=arch,
        norm_mean_db=(0.0,) * n_mels,
        norm_std_db=(1.0,) * n_mels,
    )


@dataclass
class WideFakeModel:
    """A ``Model``: label scores from segment energy, a seeded random embedding per segment."""

    card: ModelCard
    precision: Precision = Precision.FP32
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def predict(self, waveforms: torch.Tensor, top_k: int) -> TopK:
        n_samples = waveforms.shape[1]
        rms = (
            torch.linalg.vector_norm(waveforms, dim=1) / n_samples**0.5
        ).numpy()  # no (B, window) temporary
        centres = np.linspace(0.0, 0.5, N_LABELS, dtype=np.float32)
        scores = 1.0 / (1.0 + np.abs(rms[:, None] - centres[None, :]))
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        dim = self.card.arch.embedding_dim
        embeddings = self.rng.standard_normal((len(rms), dim), dtype=np.float32)
        return TopK(np.take_along_axis(scores, order, axis=1), order.astype(np.int64), embeddings)


def install(embedding_dim: int) -> None:
    """Make ``label_archive`` load the fake model instead of a checkpoint."""

    class _Loader:
        @staticmethod
        def load(_model_dir: Path, _device: torch.device, _precision: Precision) -> WideFakeModel:
            return WideFakeModel(wide_card(embedding_dim))

    pipeline.TorchModel = _Loader  # type: ignore[misc,assignment]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--embedding-dim", type=int, default=1024)
    parser.add_argument("audify_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    install(args.embedding_dim)
    rest = args.audify_args[1:] if args.audify_args[:1] == ["--"] else args.audify_args
    sys.exit(audify_main(rest))


if __name__ == "__main__":
    main()
