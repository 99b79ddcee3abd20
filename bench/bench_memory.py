"""Peak memory of ``audify label`` on one long recording vs one 10-minute recording.

    PYTHONPATH=. .venv/bin/python bench/bench_memory.py [--hours 10] [--short-min 10]
        [--models default] [--fake-hours 10 100] [--embedding-dim 1024] [--repeat 1]
        [--skip-real] [--skip-fake]

Runs each labeling in a subprocess and samples its whole process tree (the main process
and its DataLoader workers) every 50 ms. Reports the peak of the summed RSS and of the
summed PSS (proportional set size: shared pages counted once), in MiB, and each long
recording's peak PSS beside the 10-minute recording's with their ratio (medians over
``--repeat`` runs each; each run's peak PSS is listed too, the spread is tens of MiB).
Figures in the changelog and issues are ``--repeat 3``, run under ``nice`` on the 2-core
reference machine (the run's own rows held are bounded by ``audify_batch.run.rows.SPILL_BYTES``).

Two models:
- real: ``audify label --model M`` for each of ``--models`` (shipped names or checkpoint
  folders), on FLACs of tones (``bench.archive``).
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
    runs_pss_mib: tuple[float, ...] = ()  # each run's peak PSS, of a median


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
        tuple(p.pss_mib for p in peaks),
    )


def measure(name: str, command: list[str], recordings: dict[float, Path], repeat: int) -> None:
    """Print the peaks of each recording (hours -> file) and their ratios to the shortest."""
    peaks: dict[float, Peak] = {}
    for hours, path in sorted(recordings.items()):
        peak = peaks[hours] = median_peak(command, path, repeat)
        runs = ", ".join(f"{pss:.0f}" for pss in peak.runs_pss_mib)
        print(
            f"{name}: {hours:7.2f} h recording: peak RSS {peak.rss_mib:7.1f} MiB, "
            f"peak PSS {peak.pss_mib:7.1f} MiB (median of {repeat}: {runs}), {peak.wall_s:6.1f} s "
            f"({hours * 3600 / peak.wall_s:.0f}x realtime)",
            flush=True,
        )
    short_h = min(peaks)
    short = peaks[short_h].pss_mib
    for hours in sorted(peaks)[1:]:
        long = peaks[hours].pss_mib
        ok = long / short <= TARGET_RATIO and long <= CEILING_MIB
        print(
            f"{name}: peak PSS {hours:g} h {long:.1f} MiB / {short_h * 60:g} min {short:.1f} MiB "
            f"= {long / short:.2f} (target: at most {TARGET_RATIO:.2f}, and at most "
            f"{CEILING_MIB:.0f} MiB) {'ok' if ok else 'MISSED'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=10.0, help="long recording, real model")
    parser.add_argument("--models", nargs="+", default=["default"], help="real models: --model of label")
    parser.add_argument("--short-min", type=float, default=10.0)
    parser.add_argument("--fake-hours", type=float, nargs="*", default=[10.0, 100.0])
    parser.add_argument("--embedding-dim", type=int, default=1024, help="of the fake model")
    parser.add_argument("--repeat", type=int, default=1, help="runs per recording (median)")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-fake", action="store_true")
    args = parser.parse_args()
    short_h = args.short_min / 60
    if not args.skip_real:
        real = {h: long_recording(h) for h in (short_h, args.hours)}
        for model in args.models:
            audify = [str(Path(sys.executable).parent / "audify"), "label", "--model", model]
            measure(f"real model {model}", audify, real, args.repeat)
    if not args.skip_fake:
        fake = [sys.executable, "-m", "bench.fake_label", "--embedding-dim", str(args.embedding_dim)]
        fake += ["--", "label"]
        silent = {h: silent_recording(CACHE, h) for h in (short_h, *args.fake_hours)}
        measure(f"fake {args.embedding_dim}-d model", fake, silent, args.repeat)


if __name__ == "__main__":
    main()
