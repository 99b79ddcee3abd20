"""End-to-end throughput of ``audify label`` vs a naive loop, same model, same archive.

    .venv/bin/python bench/bench_pipeline.py [--workers N] [--precision auto|fp32|bf16]

Archive: 8 FLACs of 44.1 kHz, 16-bit, 250 s each (33 min), made from ../shared's fold-4 clips.
Pipeline: decode + resample + segment in DataLoader workers, log-mel + CNN in batches of 64,
Parquet output. Naive (how the origin demos did it): each file read whole into memory,
resampled whole, then one 5-second segment at a time through the model in fp32.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audify_batch.ingest.audio_io import resample
from audify_batch.model.checkpoint import load_checkpoint
from audify_batch.model.inference import Precision
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from bench.archive import fold4_archive


@torch.inference_mode()
def naive_label(folder: Path) -> tuple[int, float]:
    """Segments labeled and seconds taken by the naive loop."""
    started = time.perf_counter()
    model, card = load_checkpoint()
    window = 5 * card.frontend.sample_rate_hz
    n_segments = 0
    for path in sorted(folder.glob("*.flac")):
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        audio = resample(data.mean(axis=1), rate, card.frontend.sample_rate_hz)
        for start in range(0, len(audio), window):
            piece = np.pad(audio[start : start + window], (0, max(0, start + window - len(audio))))
            probs = torch.softmax(model(torch.from_numpy(piece)[None]).logits, dim=1)
            probs.topk(5)
            n_segments += 1
    return n_segments, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int)
    parser.add_argument("--precision", default="auto", choices=[p.value for p in Precision])
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    folder = fold4_archive()
    audio_s = sum(sf.info(str(p)).duration for p in folder.glob("*.flac"))
    out = Path(tempfile.mkdtemp(prefix="audify-bench-out-"))
    try:
        config = LabelConfig.of(
            source=str(folder), out=str(out), workers=args.workers, precision=Precision(args.precision)
        )
        started = time.perf_counter()
        summary = label_archive(config)
        wall_s = time.perf_counter() - started
    finally:
        shutil.rmtree(out)
    print(
        f"archive: {len(list(folder.glob('*.flac')))} FLAC files, 44.1 kHz, {audio_s / 60:.1f} min of audio"
    )
    print(
        f"pipeline: {summary.n_segments} segments in {wall_s:.2f} s = {audio_s / wall_s:.0f}x realtime "
        f"({summary.n_segments / wall_s:.0f} segments/s, {torch.get_num_threads()} threads)"
    )
    if not args.skip_naive:
        torch.set_num_threads(torch.get_num_threads())
        n_naive, naive_s = naive_label(folder)
        print(f"naive loop: {n_naive} segments in {naive_s:.2f} s = {audio_s / naive_s:.0f}x realtime")
        print(f"pipeline / naive: {naive_s / wall_s:.1f}x faster")


if __name__ == "__main__":
    main()
