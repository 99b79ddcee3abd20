"""What keeping freed memory (``audify_batch/model/cpu_memory.py``) is worth, side by side.

    PYTHONPATH=. .venv/bin/python bench/bench_cpu_memory.py [--model default] [--rounds 3]

``mallopt`` changes a process for good, so each measurement runs in a fresh child process:
the model alone (frontend + CNN, batch 64 of 5 s segments in memory, 2 threads), fp32 and
bf16, once with glibc's defaults and once after ``keep_freed_memory``, the two interleaved for
``--rounds`` rounds. Prints each round and the medians and their ratio. Also counts the page
faults of one batch either way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, torch
from audify_batch.model.checkpoint import load_checkpoint
from audify_batch.model.cpu_memory import keep_freed_memory
from audify_batch.model.inference import Precision, score_batch
kept = sys.argv[2] == "kept" and keep_freed_memory()
torch.set_num_threads(2)
network, card = load_checkpoint(sys.argv[1])
network = network.eval()
if network.channels_last:
    network.net.to(memory_format=torch.channels_last)
gen = torch.Generator().manual_seed(0)
waves = [0.1 * torch.randn(64, 80_000, generator=gen) for _ in range(3)]
out = {"kept": kept}
for precision in (Precision.FP32, Precision.BF16):
    score_batch(network, waves[0], precision)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    for wave in waves:
        score_batch(network, wave, precision)
    out[precision.value] = 64 * len(waves) / (time.perf_counter() - started)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    out[precision.value + "_faults_per_batch"] = faults / len(waves)
print(json.dumps(out))
"""


def measure(model: str, mode: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, model, mode], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"glibc defaults": [], "kept": []}
    for round_ in range(args.rounds):
        for mode, name in (("plain", "glibc defaults"), ("kept", "kept")):
            result = measure(args.model, mode)
            runs[name].append(result)
            print(
                f"round {round_ + 1} {name:<15} fp32 {result['fp32']:6.1f}  bf16 {result['bf16']:6.1f} seg/s"
                f"  page faults per bf16 batch {result['bf16_faults_per_batch']:,.0f}",
                flush=True,
            )
    print(f"\n{args.model}, batch 64, 2 threads, medians of {args.rounds}:")
    medians = {
        name: {p: statistics.median(r[p] for r in results) for p in ("fp32", "bf16")}
        for name, results in runs.items()
    }
    for precision in ("fp32", "bf16"):
        plain, kept = medians["glibc defaults"][precision], medians["kept"][precision]
        print(f"  {precision}: {plain:6.1f} -> {kept:6.1f} seg/s ({kept / plain:.2f}x)")


if __name__ == "__main__":
    main()
