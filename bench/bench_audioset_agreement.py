"""Do the default model's AudioSet labels stay YAMNet's? Top-1 agreement with the unmodified port.

On the 400 fold-4 clips at 44.1 kHz (decoded and resampled as the pipeline does), the model's
top AudioSet label against the port's own: YAMNet's 0.96 s patches every 0.48 s, scores
averaged, float32 weights.

    PYTHONPATH=. .venv/bin/python bench/bench_audioset_agreement.py [--model default]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from audify_batch.model.checkpoint import load_checkpoint
from audify_batch.model.inference import Precision, score_batch
from audify_batch.model.yamnet import Coverage, load_yamnet
from training.data import SHARED_DATA, load_dataset
from training.yamnet_features import load_waveforms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    torch.set_num_threads(2)
    clips = load_dataset(SHARED_DATA / "esc50-fold4-44k", "fold4.csv", expect_full=False).clips
    waveforms = torch.from_numpy(load_waveforms(clips))
    network, card = load_checkpoint(args.model)
    port = load_yamnet(coverage=Coverage.PATCHES)
    agree = {}
    with torch.inference_mode():
        reference = torch.cat([port(waveforms[i : i + 32]).scores for i in range(0, len(waveforms), 32)])
        for precision in (Precision.FP32, Precision.BF16):
            ours = [
                score_batch(network, waveforms[i : i + 32], precision) for i in range(0, len(waveforms), 32)
            ]
            top = torch.cat([s.audioset for s in ours if s.audioset is not None]).argmax(1)
            agree[precision.value] = float((top == reference.argmax(1)).float().mean())
    names = np.asarray(card.audioset_labels)[reference.argmax(1).numpy()]
    common = ", ".join(
        f"{n} {c}" for n, c in zip(*np.unique(names, return_counts=True), strict=True) if c >= 15
    )
    print(
        f"{card.name} {card.version} vs the YAMNet port (hop 0.48 s), {len(clips)} fold-4 clips at 44.1 kHz:"
    )
    for name, share in agree.items():
        print(f"  top-1 AudioSet label agrees on {share:.1%} ({name})")
    print(f"  the port's most common top-1 labels: {common}")


if __name__ == "__main__":
    main()
