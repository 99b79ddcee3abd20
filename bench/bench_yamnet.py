"""Throughput of the torch YAMNet port on this CPU, and of the int8 TFLite interpreter.

    .venv/bin/python bench/bench_yamnet.py [--threads 2] [--batch-size 64] [--repeats 3]

Torch: 5 s segments (80,000 samples at 16 kHz) per second, a batch of 64 already in memory,
frontend included, float32, in both coverage modes (``full``: one pass over the segment;
``patches``: nine 0.96 s patches every 0.48 s); medians of the repeats. TFLite (needs the
``training`` extra; default delegates, i.e. XNNPACK): milliseconds per 0.975 s patch with the
same thread count, and per 5 s segment (nine patches). Takes under a minute on two cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from audify_batch.model.yamnet import TFLITE_INPUT_SAMPLES, Coverage, load_yamnet

SEGMENT_SAMPLES = 80_000  # 5 s at 16 kHz
PATCHES_PER_SEGMENT = 9  # 0.975 s patches every 0.48 s
TFLITE = Path(__file__).resolve().parents[2] / "shared/models/yamnet/yamnet_classifier_int8.tflite"


def torch_rate(coverage: Coverage, batch_size: int, repeats: int) -> float:
    """Median segments per second over ``repeats`` timed batches."""
    model = load_yamnet(coverage=coverage)
    wave = 0.1 * torch.randn(batch_size, SEGMENT_SAMPLES, generator=torch.Generator().manual_seed(0))
    rates = []
    with torch.inference_mode():
        model(wave[:8])
        for _ in range(repeats):
            started = time.perf_counter()
            model(wave)
            rates.append(batch_size / (time.perf_counter() - started))
    return statistics.median(rates)


def tflite_ms_per_patch(threads: int, invokes: int, repeats: int) -> float | None:
    """Median milliseconds per interpreter call on one 0.975 s patch; None without ai_edge_litert."""
    if importlib.util.find_spec("ai_edge_litert") is None:
        return None
    litert = importlib.import_module("ai_edge_litert.interpreter")
    interpreter = litert.Interpreter(model_path=str(TFLITE), num_threads=threads)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    patch = (0.1 * np.random.default_rng(0).standard_normal(TFLITE_INPUT_SAMPLES)).astype(np.float32)
    interpreter.set_tensor(index, patch)
    interpreter.invoke()
    times_ms = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(invokes):
            interpreter.set_tensor(index, patch)
            interpreter.invoke()
        times_ms.append(1000 * (time.perf_counter() - started) / invokes)
    return statistics.median(times_ms)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size} x 5 s")
    for coverage in (Coverage.FULL, Coverage.PATCHES):
        rate = torch_rate(coverage, args.batch_size, args.repeats)
        print(f"  {coverage.value:8s}: {rate:6.1f} segments/s ({1000 / rate:6.1f} ms per segment)")
    ms = tflite_ms_per_patch(args.threads, invokes=200, repeats=args.repeats)
    if ms is None:
        print("TFLite: ai_edge_litert not installed (pip install -e '.[training]')")
        return
    segment_ms = PATCHES_PER_SEGMENT * ms
    print(
        f"TFLite int8, {args.threads} threads: {ms:.2f} ms per 0.975 s patch, "
        f"{segment_ms:.1f} ms per 5 s segment ({PATCHES_PER_SEGMENT} patches), "
        f"{1000 / segment_ms:.1f} segments/s"
    )


if __name__ == "__main__":
    main()
