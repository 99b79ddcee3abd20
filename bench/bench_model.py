"""Throughput of the shipped model alone: 5-second segments per second, batch 64.

    .venv/bin/python bench/bench_model.py [--batches 10] [--repeats 3] [--update-card]

Times the frontend (log-mel) plus the CNN on waveform batches already in
memory (decoding is the pipeline's business), in fp32 and in bf16 autocast,
with torch's thread count at the machine's cores. Prints one line per
precision; --update-card writes the figures into the model card.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from audify_batch.model.checkpoint import CARD_FILE, DEFAULT_MODEL_DIR, load_checkpoint
from audify_batch.model.inference import (
    Precision,
    cpu_supports_bf16,
    keep_batch_memory,
    predict_batch,
    prepare_for_inference,
)
from audify_batch.model.network import Network


def measure(
    model: Network, sample_rate_hz: int, precision: Precision, batch_size: int, batches: int, repeats: int
) -> float:
    gen = torch.Generator().manual_seed(0)
    n_samples = 5 * sample_rate_hz
    waves = [0.1 * torch.randn(batch_size, n_samples, generator=gen) for _ in range(batches)]
    for wave in waves[:2]:
        predict_batch(model, wave, precision)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for wave in waves:
            predict_batch(model, wave, precision)
        rates.append(batch_size * batches / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--update-card", action="store_true")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="checkpoint folder")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model, card = load_checkpoint(Path(args.model))
    model = prepare_for_inference(model, torch.device("cpu"))
    keep_batch_memory(torch.device("cpu"))
    result: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "command": "python bench/bench_model.py",
    }
    precisions = [Precision.FP32] + ([Precision.BF16] if cpu_supports_bf16() else [])
    for precision in precisions:
        rate = measure(
            model, card.frontend.sample_rate_hz, precision, args.batch_size, args.batches, args.repeats
        )
        result[f"segments_per_s_{precision.value}"] = round(rate, 1)
        print(
            f"{card.name} {card.version} {precision.value}: {rate:.0f} segments of 5 s per second "
            f"(batch {args.batch_size}, {torch.get_num_threads()} threads, {rate * 5:.0f}x realtime)"
        )
    if args.update_card:
        path = Path(args.model) / CARD_FILE
        data = json.loads(path.read_text())
        data["evaluation"]["cpu_inference"] = result
        path.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote figures into {path}")


if __name__ == "__main__":
    main()
