"""Peak memory of ``audify label`` on one 10-hour recording vs one 10-minute recording.

    .venv/bin/python bench/bench_memory.py [--hours 10] [--short-min 10]

Runs ``audify label`` in a subprocess and samples its whole process tree (the main
process and its DataLoader workers) every 50 ms. Reports the peak of the summed RSS and
of the summed PSS (proportional set size: shared pages counted once), in MiB.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.archive import long_recording


def _tree_memory(proc: psutil.Process) -> tuple[int, int]:
    rss = pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss, pss


def peak_memory(recording: Path) -> tuple[float, float, float]:
    """(peak RSS MiB, peak PSS MiB, wall seconds) of labeling one recording."""
    out = Path(tempfile.mkdtemp(prefix="audify-mem-"))
    audify = Path(sys.executable).parent / "audify"
    started = time.perf_counter()
    proc = psutil.Popen(
        [str(audify), "label", str(recording), "--out", str(out), "--no-progress"], stdout=subprocess.DEVNULL
    )
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        rss, pss = _tree_memory(proc)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.05)
    wall_s = time.perf_counter() - started
    shutil.rmtree(out)
    if proc.returncode != 0:
        raise SystemExit(f"audify label failed on {recording} ({proc.returncode})")
    return peak_rss / 2**20, peak_pss / 2**20, wall_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=10.0)
    parser.add_argument("--short-min", type=float, default=10.0)
    args = parser.parse_args()
    results = {}
    for label, hours in (("short", args.short_min / 60), ("long", args.hours)):
        path = long_recording(hours)
        rss, pss, wall = peak_memory(path)
        results[label] = pss
        print(
            f"{hours:6.2f} h recording: peak RSS {rss:7.1f} MiB, peak PSS {pss:7.1f} MiB, "
            f"{wall:.1f} s ({hours * 3600 / wall:.0f}x realtime)"
        )
    ratio = results["long"] / results["short"]
    print(f"long / short peak PSS: {ratio:.2f} (target: at most 1.20; long at most 1024 MiB)")


if __name__ == "__main__":
    main()
