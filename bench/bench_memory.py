"""Peak memory of ``audify label`` on one long recording vs one 10-minute recording.

    PYTHONPATH=. .venv/bin/python bench/bench_memory.py [--hours 10] [--short-min 10]
        [--fake-hours 10 100] [--embedding-dim 1024] [--repeat 1] [--skip-real] [--skip-fake]

Runs each labeling in a subprocess and samples its whole process tree (the main process
and its DataLoader workers) every 50 ms. Reports the peak of the summed RSS and of the
summed PSS (proportional set size: shared pages counted once), in MiB, and the ratios of
the peak PSS to the 10-minute recording's (the median over ``--repeat`` runs each).

Two models:
- real: ``audify label`` with the default checkpoint, on FLACs of tones (``bench.archive``);
  10 hours take about 7 minutes on the 2-core reference machine.
- fake: ``bench.fake_label``, a stand-in model with ``--embedding-dim`` embeddings that
  costs next to nothing, on sparse RF64 files of silence (``bench.sparse_audio``): the
  whole pipeline but the model, so a 100-hour recording (72,000 segments) takes minutes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.archive import CACHE, long_recording
from bench.sparse_audio import silent_recording

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.2
CEILING_MIB = 1024.0


@dataclass(frozen=True)
class Peak:
    rss_mib: float
    pss_mib: float
    wall_s: float


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


def peak_memory(command: list[str], recording: Path) -> Peak:
    """Peak memory and wall time of labeling ``recording`` with ``command`` (+ SOURCE --out OUT)."""
    out = Path(tempfile.mkdtemp(prefix="audify-mem-"))
    started = time.perf_counter()
    args = [*command, str(recording), "--out", str(out), "--no-progress"]
    proc = psutil.Popen(args, stdout=subprocess.DEVNULL, cwd=REPO)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        rss, pss = _tree_memory(proc)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.05)
    wall_s = time.perf_counter() - started
    shutil.rmtree(out)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed on {recording} ({proc.returncode})")
    return Peak(peak_rss / 2**20, peak_pss / 2**20, wall_s)


def median_peak(command: list[str], recording: Path, repeat: int) -> Peak:
    peaks = [peak_memory(command, recording) for _ in range(repeat)]
    return Peak(
        statistics.median(p.rss_mib for p in peaks),
        statistics.median(p.pss_mib for p in peaks),
        statistics.median(p.wall_s for p in peaks),
    )


def measure(name: str, command: list[str], recordings: dict[float, Path], repeat: int) -> None:
    """Print the peaks of each recording (hours -> file) and their ratios to the shortest."""
    peaks: dict[float, Peak] = {}
    for hours, path in sorted(recordings.items()):
        peak = peaks[hours] = median_peak(command, path, repeat)
        print(
            f"{name}: {hours:7.2f} h recording: peak RSS {peak.rss_mib:7.1f} MiB, "
            f"peak PSS {peak.pss_mib:7.1f} MiB, {peak.wall_s:6.1f} s "
            f"({hours * 3600 / peak.wall_s:.0f}x realtime)",
            flush=True,
        )
    short_h = min(peaks)
    for hours in sorted(peaks)[1:]:
        ratio = peaks[hours].pss_mib / peaks[short_h].pss_mib
        ok = ratio <= TARGET_RATIO and peaks[hours].pss_mib <= CEILING_MIB
        print(
            f"{name}: {hours:g} h / {short_h * 60:g} min peak PSS: {ratio:.2f} "
            f"(target: at most {TARGET_RATIO:.2f}, and at most {CEILING_MIB:.0f} MiB) "
            f"{'ok' if ok else 'MISSED'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=10.0, help="long recording, real model")
    parser.add_argument("--short-min", type=float, default=10.0)
    parser.add_argument("--fake-hours", type=float, nargs="*", default=[10.0, 100.0])
    parser.add_argument("--embedding-dim", type=int, default=1024, help="of the fake model")
    parser.add_argument("--repeat", type=int, default=1, help="runs per recording (median)")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-fake", action="store_true")
    args = parser.parse_args()
    short_h = args.short_min / 60
    if not args.skip_real:
        audify = [str(Path(sys.executable).parent / "audify"), "label"]
        real = {h: long_recording(h) for h in (short_h, args.hours)}
        measure("real model", audify, real, args.repeat)
    if not args.skip_fake:
        fake = [sys.executable, "-m", "bench.fake_label", "--embedding-dim", str(args.embedding_dim)]
        fake += ["--", "label"]
        silent = {h: silent_recording(CACHE, h) for h in (short_h, *args.fake_hours)}
        measure(f"fake {args.embedding_dim}-d model", fake, silent, args.repeat)


if __name__ == "__main__":
    main()
