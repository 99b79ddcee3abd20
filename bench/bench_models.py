"""Speed of the models side by side in one run (issue 12's speed targets), on this CPU.

    PYTHONPATH=. .venv/bin/python bench/bench_models.py --models default,fast --repeats 5 --e2e-repeats 1

1. Model alone: 5 s segments (80,000 samples at 16 kHz) per second, batches of 64 already in
   memory, frontend included (``score_batch``), fp32 and bf16, 2 torch threads; one warm-up,
   then the median (min, max) of ``--repeats`` timings of ``--batches`` batches each.
2. End to end: ``label_archive`` (what ``audify label`` runs) over the 33-minute fold-4 archive
   (bench/archive.py: 8 FLACs of 250 s at 44.1 kHz), precision auto, default workers and
   threads, each run into a fresh OUT; realtime factor = audio seconds / wall seconds, median.
3. YAMNet's own int8 TFLite runtime over the same archive in the same process, end to end:
   decode + resample to 16 kHz (``read_mono``), 0.975 s patches every 0.48 s, one
   ``invoke`` per patch with 2 threads; skipped with a note without ``ai_edge_litert``.

Models are names (``default``, ``fast``) or checkpoint folders (e.g. ``runs/prov``). The host
is shared: the load average is printed before and after. A smoke run with a tiny archive:
``--repeats 1 --batches 1 --archive-files 1 --clips-per-file 4``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from audify_batch.ingest.audio_io import read_mono
from audify_batch.model.checkpoint import load_checkpoint
from audify_batch.model.inference import (
    Precision,
    cpu_supports_bf16,
    keep_batch_memory,
    prepare_for_inference,
    score_batch,
)
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from bench.archive import fold4_archive

THREADS = 2
YAMNET_RATE_HZ = 16_000
PATCH_SAMPLES = 15_600  # 0.975 s at 16 kHz: the TFLite classifier's input
PATCH_HOP_SAMPLES = 7_680  # 0.48 s
TFLITE = Path(__file__).resolve().parents[2] / "shared/models/yamnet/yamnet_classifier_int8.tflite"


@dataclass(frozen=True)
class Timing:
    """Median, min and max of repeated measurements of one rate."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Timing:
        return cls(statistics.median(values), min(values), max(values))

    def __str__(self) -> str:
        return f"{self.median:8.1f}  ({self.low:.1f} .. {self.high:.1f})"


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def model_alone(model_name: str, precision: Precision, batch_size: int, batches: int, repeats: int) -> Timing:
    """Segments per second of ``score_batch`` on in-memory 5 s waveforms."""
    network, card = load_checkpoint(model_name)
    network = prepare_for_inference(network, torch.device("cpu"))
    keep_batch_memory(torch.device("cpu"))
    n_samples = round(card.segment_s * card.frontend.sample_rate_hz)
    gen = torch.Generator().manual_seed(0)
    waves = [0.1 * torch.randn(batch_size, n_samples, generator=gen) for _ in range(batches)]
    score_batch(network, waves[0], precision)  # warm-up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for wave in waves:
            score_batch(network, wave, precision)
        rates.append(batch_size * batches / (time.perf_counter() - started))
    return Timing.of(rates)


def model_title(model_name: str) -> str:
    _, card = load_checkpoint(model_name)
    return f"{model_name} = {card.name} {card.version}"


def repeated_realtime(run_once: Callable[[], float], audio_s: float, repeats: int) -> Timing:
    """Realtime factors (audio seconds / wall seconds) of ``repeats`` calls of ``run_once``."""
    return Timing.of([audio_s / run_once() for _ in range(repeats)])


def label_once(folder: Path, model_name: str) -> float:
    """Wall seconds of one ``audify label`` run over ``folder`` into a fresh OUT."""
    out = Path(tempfile.mkdtemp(prefix="audify-bench-models-"))
    try:
        config = LabelConfig.of(
            source=str(folder), out=str(out / "out"), model_dir=model_name, precision=Precision.AUTO
        )
        started = time.perf_counter()
        label_archive(config)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(out)


def tflite_interpreter() -> Any:
    """YAMNet's int8 TFLite classifier (untyped), or None without ai_edge_litert or the model file."""
    if importlib.util.find_spec("ai_edge_litert") is None or not TFLITE.is_file():
        return None
    litert = importlib.import_module("ai_edge_litert.interpreter")
    interpreter = litert.Interpreter(model_path=str(TFLITE), num_threads=THREADS)
    interpreter.allocate_tensors()
    return interpreter


def patches(audio: np.ndarray) -> np.ndarray:
    """(n, 15600) patches every 0.48 s covering ``audio``, the last one zero-padded."""
    n_patches = 1 + max(0, -(-(audio.size - PATCH_SAMPLES) // PATCH_HOP_SAMPLES))
    padded = np.zeros((n_patches - 1) * PATCH_HOP_SAMPLES + PATCH_SAMPLES, np.float32)
    padded[: audio.size] = audio
    return np.lib.stride_tricks.sliding_window_view(padded, PATCH_SAMPLES)[::PATCH_HOP_SAMPLES]


def tflite_once(folder: Path, interpreter: Any) -> float:
    """Wall seconds to decode, resample, cut and score every file of ``folder`` with TFLite."""
    in_index = interpreter.get_input_details()[0]["index"]
    out_index = interpreter.get_output_details()[0]["index"]
    started = time.perf_counter()
    for path in sorted(folder.glob("*.flac")):
        scores = []
        for patch in patches(read_mono(path, YAMNET_RATE_HZ)):
            interpreter.set_tensor(in_index, np.ascontiguousarray(patch))
            interpreter.invoke()
            scores.append(interpreter.get_tensor(out_index)[0])
        np.stack(scores).argmax(axis=1)
    return time.perf_counter() - started


def print_ratio(what: str, rates: dict[str, float], models: list[str]) -> None:
    if len(models) >= 2 and rates.get(models[1]):
        print(f"  {what} {models[0]} / {models[1]}: {rates[models[0]] / rates[models[1]]:.2f}")


def run_model_alone(args: argparse.Namespace, models: list[str]) -> None:
    precisions = [Precision.FP32, Precision.BF16]
    note = "" if cpu_supports_bf16() else " (this CPU has no native bf16: emulated)"
    print(f"\nmodel alone, batch {args.batch_size} x 5 s, {torch.get_num_threads()} threads{note}")
    print(f"  {'model':<18} {'precision':<9} {'seg/s median':>12}  (min .. max)")
    by_precision: dict[Precision, dict[str, float]] = {p: {} for p in precisions}
    for model_name in models:
        for precision in precisions:
            timing = model_alone(model_name, precision, args.batch_size, args.batches, args.repeats)
            by_precision[precision][model_name] = timing.median
            print(f"  {model_name:<18} {precision.value:<9} {timing}")
    for precision in precisions:
        print_ratio(f"seg/s {precision.value}", by_precision[precision], models)


def run_end_to_end(args: argparse.Namespace, models: list[str]) -> None:
    folder = fold4_archive(args.archive_files, args.clips_per_file)
    files = sorted(folder.glob("*.flac"))
    audio_s = sum(sf.info(str(p)).duration for p in files)
    print(f"\nend to end over {folder}: {len(files)} FLACs, {audio_s / 60:.1f} min of audio,")
    print(f"  median of {args.e2e_repeats} run(s), each into a fresh OUT")
    print(f"  {'model':<18} {'realtime x':>12}  (min .. max)")
    factors: dict[str, float] = {}
    for model_name in models:
        timing = repeated_realtime(partial(label_once, folder, model_name), audio_s, args.e2e_repeats)
        factors[model_name] = timing.median
        print(f"  {model_name:<18} {timing}")
    interpreter = tflite_interpreter()
    if interpreter is None:
        print(f"  yamnet-tflite skipped: ai_edge_litert not importable or {TFLITE} missing")
    else:
        timing = repeated_realtime(partial(tflite_once, folder, interpreter), audio_s, args.e2e_repeats)
        print(f"  {'yamnet-tflite int8':<18} {timing}  ({THREADS} threads, one patch per invoke)")
    print_ratio("realtime x", factors, models)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="default,fast", help="comma-separated names or folders")
    parser.add_argument("--repeats", type=int, default=5, help="model-alone timings")
    parser.add_argument("--batches", type=int, default=3, help="batches per model-alone timing")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--e2e-repeats", type=int, default=1, help="end-to-end runs per model")
    parser.add_argument("--archive-files", type=int, default=8, help="FLACs in the archive")
    parser.add_argument("--clips-per-file", type=int, default=50, help="5 s fold-4 clips per FLAC")
    parser.add_argument("--skip-alone", action="store_true", help="skip the model-alone part")
    parser.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end part")
    args = parser.parse_args()
    for name in ("repeats", "batches", "batch_size", "e2e_repeats", "archive_files", "clips_per_file"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    torch.set_num_threads(THREADS)
    print(f"before: {load_line()}")
    print(f"torch {torch.__version__}; " + "; ".join(model_title(m) for m in models))
    if not args.skip_alone:
        run_model_alone(args, models)
    if not args.skip_e2e:
        run_end_to_end(args, models)
    print(f"\nafter: {load_line()}")


if __name__ == "__main__":
    main()
