"""Benchmark: ``audify head apply``, segments scored per second from stored embeddings.

Writes a synthetic OUT of N segments in the real segments schema (the sink's derived
``embedding_f16`` column, encodings and compression, parts of --part-rows rows; ``--layout legacy``:
parts as written before ``embedding_f16`` existed), saves a random head for it, then prints the
median of --repeat runs of:

- apply --cache (legacy layout only: parts with ``embedding_f16`` are never cached): the whole
  ``apply_head`` reading through the local embedding cache, first (filling it: a Parquet read
  plus an IPC write) and then with the cache filled;
- apply: the whole ``apply_head`` (plan from the views, pyarrow scan, matvec, scores written);
- scan (pyarrow): the record batches of the current segments alone, scored as ``apply_head``
  scores them (``embedding_f16`` viewed as (N, D) float16 and widened in blocks, or the float32
  list viewed as (N, D) without a copy);
- scan (DuckDB): the same columns through the ``embeddings`` view, as Arrow record batches;
- matvec: the head's scores of an in-memory (N, D) matrix, float32 or float16 widened in blocks
  (what is left without Parquet).

    PYTHONPATH=. .venv/bin/python bench/bench_head_apply.py --rows 1000000 --dim 1024
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from audify_batch.review.head_apply import (
    apply_head,
    batch_scores,
    embedding_matrix,
    half_products,
    read_plan,
    scan_current,
)
from audify_batch.review.head_fit import CrossValidation, LinearHead
from audify_batch.review.heads import HeadCard, TrainedHead, load_head, save_head
from audify_batch.store import schema as S
from audify_batch.store import segments_file as SF
from audify_batch.store.query import connect

NAME, VERSION, RUN = "bench-model", "1.0.0", "20260101T000000Z-bench"
MODEL = S.model_label(NAME, VERSION)
SEGMENTS_PER_RECORDING = 500
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def segments_table(rng: np.random.Generator, first: int, n_recordings: int, dim: int) -> pa.Table:
    n = n_recordings * SEGMENTS_PER_RECORDING
    rec = np.repeat(np.arange(first, first + n_recordings), SEGMENTS_PER_RECORDING)
    index = np.tile(np.arange(SEGMENTS_PER_RECORDING), n_recordings)
    offsets = pa.array(np.arange(0, 3 * n + 1, 3, dtype=np.int32))
    embedding = rng.standard_normal((n, dim), dtype=np.float32)
    columns = {
        S.RECORDING_ID: pa.array([f"{r:016x}" for r in rec]),
        S.URI: pa.array([f"file:///archive/site{r % 20}/rec{r:06d}.flac" for r in rec]),
        S.SEGMENT_INDEX: pa.array(index, pa.int32()),
        S.START_S: pa.array(index * 5.0),
        S.END_S: pa.array(index * 5.0 + 5.0),
        S.START_SAMPLE: pa.array(index * 80_000, pa.int64()),
        S.END_SAMPLE: pa.array(index * 80_000 + 80_000, pa.int64()),
        S.LABELS: pa.ListArray.from_arrays(offsets, pa.array(np.tile(["dog", "rain", "wind"], n))),
        S.CONFIDENCES: pa.ListArray.from_arrays(offsets, pa.array(np.full(3 * n, 0.3, np.float32))),
        S.EMBEDDING: pa.FixedSizeListArray.from_arrays(pa.array(embedding.ravel()), dim),
        S.DETECTED: pa.nulls(n, pa.list_(pa.string())),
        S.AUDIOSET_LABELS: pa.nulls(n, pa.list_(pa.string())),
        S.AUDIOSET_SCORES: pa.nulls(n, pa.list_(pa.float32())),
        S.MODEL_NAME: pa.array([NAME] * n),
        S.MODEL_VERSION: pa.array([VERSION] * n),
        S.CONFIG_HASH: pa.array(["bench"] * n),
        S.RUN_ID: pa.array([RUN] * n),
    }
    return pa.Table.from_pydict(columns, schema=S.segments_schema(dim))


def recordings_table(first: int, n_recordings: int) -> pa.Table:
    rows = [
        {
            S.RECORDING_ID: f"{r:016x}",
            S.URI: f"file:///archive/site{r % 20}/rec{r:06d}.flac",
            S.SIZE_BYTES: 1,
            S.MTIME_S: 0.0,
            S.FINGERPRINT: "fp",
            S.SAMPLE_RATE_HZ: 16_000,
            S.CHANNELS: 1,
            S.DURATION_S: SEGMENTS_PER_RECORDING * 5.0,
            S.N_SEGMENTS: SEGMENTS_PER_RECORDING,
            S.STATUS: S.STATUS_LABELED,
            S.ERROR: None,
            S.MODEL_NAME: NAME,
            S.MODEL_VERSION: VERSION,
            S.CONFIG_HASH: "bench",
            S.RUN_ID: RUN,
            S.FINISHED_AT: T0 + timedelta(seconds=r),
        }
        for r in range(first, first + n_recordings)
    ]
    return pa.Table.from_pylist(rows, schema=S.RECORDINGS_SCHEMA)


def write_out(out: Path, rows: int, dim: int, part_rows: int, legacy: bool) -> int:
    """A synthetic OUT of about ``rows`` segments; returns how many it holds. ``legacy``: without
    ``embedding_f16``, as parts were written before it existed."""
    rng = np.random.default_rng(0)
    per_part = max(1, part_rows // SEGMENTS_PER_RECORDING)
    n_recordings = max(1, rows // SEGMENTS_PER_RECORDING)
    partition = S.model_partition(NAME, VERSION)
    for seq, first in enumerate(range(0, n_recordings, per_part)):
        count = min(per_part, n_recordings - first)
        name = f"part-{RUN}-{seq:05d}.parquet"
        segments = segments_table(rng, first, count, dim)
        if not legacy:
            segments = SF.with_embedding_f16(segments)
        for table_name, table in ((S.SEGMENTS, segments), (S.RECORDINGS, recordings_table(first, count))):
            path = out / table_name / partition / name
            path.parent.mkdir(parents=True, exist_ok=True)
            options = SF.write_options(table.schema) if table_name == S.SEGMENTS else {}
            pq.write_table(table, path, **({"compression": "zstd"} | options))
    return n_recordings * SEGMENTS_PER_RECORDING


def save_random_head(out: Path, dim: int) -> None:
    rng = np.random.default_rng(1)
    head = LinearHead((rng.standard_normal(dim) / np.sqrt(dim)).astype(np.float32), 0.0)
    cv = CrossValidation(
        folds=5, n_positive=5, n_negative=5, precision=1.0, recall=1.0, average_precision=1.0
    )
    card = HeadCard(
        name="bench",
        label="bench",
        model=MODEL,
        model_name=NAME,
        model_version=VERSION,
        embedding_dim=dim,
        head_version="20260101T000000000000Z-bench0",
        created_at=T0.isoformat(),
        n_present=5,
        n_absent=5,
        n_presumed_negative=0,
        annotation_ids=(),
        cv={},
    )
    save_head(out, TrainedHead(card, head, cv))


def median_s(run: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Median seconds of ``repeat`` runs of ``run`` (it returns the segments it handled), and that count."""
    times, n = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        n = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), n


def fixed_cost(out: Path) -> int:
    """What an apply does before reading any embedding: load the head, plan from the views."""
    load_head(out, "bench")
    read_plan(out, MODEL)
    return 0


def scan_pyarrow(out: Path, head: LinearHead, dim: int) -> int:
    n = 0
    for batch in scan_current(out, MODEL, read_plan(out, MODEL), dim):
        n += len(batch_scores(batch, head))
    return n


def scan_duckdb(out: Path, head: LinearHead, dim: int) -> int:
    con = connect(out, embedding_dim=dim)
    try:
        sql = (
            "SELECT recording_id, segment_index, uri, start_s, end_s, run_id, embedding FROM segments "
            f"WHERE model = '{MODEL}'"  # a constant of this script, not user input
        )
        n = 0
        for batch in con.sql(sql).to_arrow_reader(65_536):
            n += len(head.scores(embedding_matrix(batch.column(S.EMBEDDING), dim)))
        return n
    finally:
        con.close()


def report(what: str, n: int, seconds: float, note: str = "") -> None:
    print(f"{what:<40} {n / seconds:>12,.0f} segments/s  {note}".rstrip())


def measure(out: Path, n: int, dim: int, repeat: int, cache: Path | None) -> None:
    """Print each figure of the module docstring (the cache's only when ``cache`` is given)."""
    head = LinearHead(np.random.default_rng(1).standard_normal(dim).astype(np.float32), 0.0)
    fixed_s, _ = median_s(lambda: fixed_cost(out), repeat)
    figures: dict[str, Callable[[], int]] = {}
    if cache is not None:
        started = time.perf_counter()
        apply_head(out, "bench", cache_dir=cache)
        report("apply --cache, first (fills the cache)", n, time.perf_counter() - started)
        figures["apply --cache, cache filled"] = lambda: apply_head(out, "bench", cache_dir=cache).n_segments
    figures |= {
        "apply (plan, scan, score, write)": lambda: apply_head(out, "bench").n_segments,
        "scan (pyarrow) + matvec": lambda: scan_pyarrow(out, head, dim),
        "scan (DuckDB embeddings view) + matvec": lambda: scan_duckdb(out, head, dim),
    }
    for what, run in figures.items():
        seconds, handled = median_s(run, repeat)
        report(what, handled, seconds, f"({handled} in {seconds:.2f} s, median of {repeat})")
        if what.startswith("apply"):
            report(
                "  the same past its fixed cost", handled, seconds - fixed_s, f"({fixed_s:.2f} s: head, plan)"
            )
    matrix = np.random.default_rng(2).standard_normal((min(n, 200_000), dim), dtype=np.float32)
    seconds, handled = median_s(lambda: len(head.scores(matrix)), repeat)
    report("matvec alone (in memory, float32)", handled, seconds)
    half = matrix.astype(np.float16)
    seconds, handled = median_s(
        lambda: len(head.scores_of_products(half_products(half, head.weight))), repeat
    )
    report("matvec alone (in memory, float16 widened)", handled, seconds)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--rows", type=int, default=300_000, help="segments in the synthetic OUT")
    parser.add_argument("--dim", type=int, default=512, help="embedding length (default model: 1024)")
    parser.add_argument("--part-rows", type=int, default=50_000, help="segments per Parquet part")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median printed)")
    parser.add_argument(
        "--layout", choices=("current", "legacy"), default="current", help="legacy: no embedding_f16"
    )
    parser.add_argument("--out", type=Path, help="where to write OUT (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-head-") as tmp:
        out = args.out or Path(tmp) / "out"
        started = time.perf_counter()
        n = write_out(out, args.rows, args.dim, args.part_rows, args.layout == "legacy")
        size_mb = sum(p.stat().st_size for p in (out / S.SEGMENTS).rglob("*.parquet")) / 1e6
        print(
            f"OUT ({args.layout} layout): {n} segments of {args.dim}-d, "
            f"{size_mb:.0f} MB of segments Parquet, written in {time.perf_counter() - started:.1f} s"
        )
        save_random_head(out, args.dim)
        cache = Path(tmp) / "cache" if args.layout == "legacy" else None
        measure(out, n, args.dim, args.repeat, cache)


if __name__ == "__main__":
    main()
