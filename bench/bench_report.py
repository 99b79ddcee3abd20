"""Benchmark: the HTML run report over a large archive's output (time and peak memory).

Writes a synthetic OUT with the project's schemas (N recordings of M segments
each, 50 labels, random top-5 confidences, a few failures), then builds the
HTML report in a child process and prints its wall time, peak RSS and size.

    PYTHONPATH=. .venv/bin/python bench/bench_report.py --recordings 2000 --segments 360
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audify_batch.store import schema as S

MODEL, VERSION, RUN = "bench-model", "1.0", "20260101T000000Z-bench"
N_LABELS, TOP_K, DIM = 50, 5, 256


def segments_table(rng: np.random.Generator, first: int, count: int, n_segments: int) -> pa.Table:
    n = count * n_segments
    rec = np.repeat(np.arange(first, first + count), n_segments)
    index = np.tile(np.arange(n_segments), count)
    labels = rng.integers(0, N_LABELS, (n, TOP_K))
    conf = np.sort(rng.dirichlet(np.ones(N_LABELS) * 0.3, n)[:, :TOP_K], axis=1)[:, ::-1].astype(np.float32)
    label_names = np.array([f"label_{i:02d}" for i in range(N_LABELS)], dtype=object)
    offsets = np.arange(0, n * TOP_K + 1, TOP_K, dtype=np.int32)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * DIM, np.float32)), DIM)
    columns = {
        S.RECORDING_ID: pa.array([f"r{r:06d}" for r in rec]),
        S.URI: pa.array([f"/archive/site{r % 20}/rec{r:06d}.flac" for r in rec]),
        S.SEGMENT_INDEX: pa.array(index, pa.int32()),
        S.START_S: pa.array(index * 5.0),
        S.END_S: pa.array(index * 5.0 + 5.0),
        S.START_SAMPLE: pa.array(index * 220_500, pa.int64()),
        S.END_SAMPLE: pa.array(index * 220_500 + 220_500, pa.int64()),
        S.LABELS: pa.ListArray.from_arrays(offsets, pa.array(label_names[labels.ravel()], pa.string())),
        S.CONFIDENCES: pa.ListArray.from_arrays(offsets, pa.array(conf.ravel(), pa.float32())),
        S.EMBEDDING: emb,
        S.MODEL_NAME: pa.array([MODEL] * n),
        S.MODEL_VERSION: pa.array([VERSION] * n),
        S.CONFIG_HASH: pa.array(["bench"] * n),
        S.RUN_ID: pa.array([RUN] * n),
    }
    return pa.Table.from_pydict(columns, schema=S.segments_schema(DIM))


def recordings_table(first: int, count: int, n_segments: int, n_failed: int) -> pa.Table:
    rows = []
    for r in range(first, first + count):
        failed = r < n_failed
        rows.append(
            {
                S.RECORDING_ID: f"r{r:06d}",
                S.URI: f"/archive/site{r % 20}/rec{r:06d}.flac",
                S.SIZE_BYTES: 10_000_000,
                S.MTIME_S: 1.7e9,
                S.FINGERPRINT: "b2h64k:bench",
                S.SAMPLE_RATE_HZ: 44_100,
                S.CHANNELS: 1,
                S.DURATION_S: n_segments * 5.0,
                S.N_SEGMENTS: 0 if failed else n_segments,
                S.STATUS: S.STATUS_FAILED if failed else S.STATUS_LABELED,
                S.ERROR: "not readable as audio (bench)" if failed else None,
                S.MODEL_NAME: MODEL,
                S.MODEL_VERSION: VERSION,
                S.CONFIG_HASH: "bench",
                S.RUN_ID: RUN,
                S.FINISHED_AT: datetime(2026, 1, 1, tzinfo=UTC),
            }
        )
    return pa.Table.from_pylist(rows, schema=S.RECORDINGS_SCHEMA)


def write_output(out: Path, n_recordings: int, n_segments: int, per_part: int = 200) -> None:
    rng = np.random.default_rng(0)
    part = S.model_partition(MODEL, VERSION)
    for table in (S.SEGMENTS, S.RECORDINGS, S.RUNS):
        (out / table / part).mkdir(parents=True, exist_ok=True)
    n_failed = max(1, n_recordings // 500)
    for seq, first in enumerate(range(0, n_recordings, per_part)):
        count = min(per_part, n_recordings - first)
        name = f"part-{RUN}-{seq:05d}.parquet"
        labeled_first = max(first, n_failed)
        if first + count > labeled_first:
            segs = segments_table(rng, labeled_first, first + count - labeled_first, n_segments)
            pq.write_table(segs, out / S.SEGMENTS / part / name, compression="zstd")
        pq.write_table(recordings_table(first, count, n_segments, n_failed), out / S.RECORDINGS / part / name)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    run = {
        S.RUN_ID: RUN,
        S.STARTED_AT: when,
        S.FINISHED_AT: when,
        S.RUN_STATUS: S.RUN_COMPLETED,
        S.CONFIG_JSON: json.dumps({"bench": True}),
        S.CONFIG_HASH: "bench",
        S.MODEL_NAME: MODEL,
        S.MODEL_VERSION: VERSION,
        S.N_RECORDINGS: n_recordings,
        S.N_LABELED: n_recordings - n_failed,
        S.N_FAILED: n_failed,
        S.N_SKIPPED: 0,
        S.N_SEGMENTS: (n_recordings - n_failed) * n_segments,
        S.AUDIO_S: n_recordings * n_segments * 5.0,
        S.WALL_S: 3600.0,
    }
    runs = pa.Table.from_pylist([run], schema=S.RUNS_SCHEMA)
    pq.write_table(runs, out / S.RUNS / part / f"run-{RUN}-01.parquet")


def report_child(out: str, html: str) -> None:
    from audify_batch.report.run_report import html_report

    started = time.perf_counter()
    Path(html).write_text(html_report(out))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"report_s": time.perf_counter() - started, "peak_rss_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recordings", type=int, default=2000)
    parser.add_argument("--segments", type=int, default=360, help="per recording (360 = 30 min)")
    parser.add_argument("--work", default="/tmp/audify-bench/report")
    args = parser.parse_args()
    out = Path(args.work) / f"out-{args.recordings}x{args.segments}"
    if not out.exists():
        started = time.perf_counter()
        write_output(out, args.recordings, args.segments)
        print(f"wrote synthetic OUT in {time.perf_counter() - started:.1f} s: {out}")
    size_mib = sum(p.stat().st_size for p in out.rglob("*.parquet")) / 2**20
    html = out.parent / f"report-{args.recordings}x{args.segments}.html"
    code = f"from bench.bench_report import report_child; report_child({str(out)!r}, {str(html)!r})"
    result = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    n_segments = (args.recordings - max(1, args.recordings // 500)) * args.segments
    print(
        f"archive: {args.recordings} recordings, {n_segments} segments "
        f"({n_segments * 5 / 3600:.0f} h of audio), Parquet {size_mib:.0f} MiB"
    )
    print(
        f"report: {result['report_s']:.1f} s, peak RSS {result['peak_rss_mib']:.0f} MiB, "
        f"HTML {html.stat().st_size / 2**20:.2f} MiB -> {html}"
    )


if __name__ == "__main__":
    main()
