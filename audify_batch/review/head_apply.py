"""``audify head apply``: score every current segment of a head's model from its stored embeddings
(no audio decoded), streamed, and write the scores under ``OUT/head_scores/head=<NAME>/``.

Which rows are current comes from the ``recordings`` view (the one definition): the segments
parts holding current recordings are read with pyarrow, whole where every recording in them is
current, else filtered to those that are; debris and superseded rows are never read as current.
Each record batch's FixedSizeList embedding is viewed as an (N, D) float32 matrix without a copy
and scored with one matrix-vector product.

Rerun policy: an apply writes its parts as ``part-<apply_id>-<seq>.parquet`` (each whole or not
at all), then the marker ``commit-<apply_id>.json``, and only then removes the files of older
applies of that head (debris of killed ones included). The ``head_scores`` view shows the latest
committed apply of each head: before the marker, readers still see the previous scores; after
it, the new ones; never a mix. Run one apply of a head at a time: of two at once, the
later-started one wins and, once committed, removes the earlier one's files, which then fails;
the winner's scores are whole. Apply ids come from the clock: a clock set back (or another host
writing to the same OUT) can hide a new apply behind an older committed one.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from audify_batch.fs import is_local
from audify_batch.review import embedding_cache
from audify_batch.review.head_fit import LinearHead
from audify_batch.review.heads import load_head
from audify_batch.store import schema as S
from audify_batch.store.query import connect, fetch_file, normalize_out
from audify_batch.store.sink import write_bytes_atomic, write_parquet_atomic

HEAD_SCORES = "head_scores"  # folder under OUT
HEAD = "head"
SCORE = "score"
HEAD_VERSION = "head_version"
BATCH_ROWS = 65_536  # segments per record batch read
ROWS_PER_PART = 1_000_000  # segments per written part
READ_COLUMNS = (S.RECORDING_ID, S.SEGMENT_INDEX, S.URI, S.START_S, S.END_S, S.RUN_ID, S.EMBEDDING)
_APPLY_FILE = re.compile(r"(?:part-(?P<part>.+)-\d+\.parquet(?:\..+\.tmp)?|commit-(?P<commit>.+)\.json)")

HEAD_SCORES_SCHEMA = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),
        pa.field(S.RECORDING_ID, pa.string(), nullable=False),
        pa.field(S.SEGMENT_INDEX, pa.int32(), nullable=False),
        pa.field(S.URI, pa.string(), nullable=False),
        pa.field(S.START_S, pa.float64(), nullable=False),
        pa.field(S.END_S, pa.float64(), nullable=False),
        pa.field(S.RUN_ID, pa.string(), nullable=False),
        pa.field(HEAD, pa.string(), nullable=False),
        pa.field(SCORE, pa.float32(), nullable=False),
        pa.field(HEAD_VERSION, pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class PartPlan:
    """One segments part to read: whole (``recording_ids`` None) or only those recordings' rows."""

    part: str
    recording_ids: tuple[str, ...] | None


@dataclass(frozen=True)
class ApplyResult:
    head: str
    model: str
    apply_id: str
    n_segments: int
    n_parts: int  # score files written
    n_removed: int  # files of older applies removed
    wall_s: float

    @property
    def segments_per_s(self) -> float:
        return self.n_segments / self.wall_s if self.wall_s > 0 else 0.0


def read_plan(out: str | os.PathLike[str], model: str) -> list[PartPlan]:
    """The segments parts of ``model`` that hold current rows, and which of their rows are current."""
    con = connect(out)
    try:
        rows = fetch_file(con, "head_parts", {"model": model}).rows
    finally:
        con.close()
    by_part: dict[str, list[tuple[str, bool]]] = {}
    for part, recording_id, _, current in rows:
        by_part.setdefault(part, []).append((recording_id, bool(current)))
    plans = []
    for part, members in sorted(by_part.items()):
        whole = all(current for _, current in members)
        plans.append(PartPlan(part, None if whole else tuple(r for r, current in members if current)))
    return plans


def embedding_matrix(column: pa.Array | pa.ChunkedArray, dim: int) -> np.ndarray:
    """(N, D) float32 view of a FixedSizeList (or list of equal lengths) embedding column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) == 0:
        return np.empty((0, dim), dtype=np.float32)
    values = column.flatten().to_numpy(zero_copy_only=False)  # flatten honours slices
    if values.size != len(column) * dim:
        raise ValueError(f"embeddings of {values.size // max(len(column), 1)} values, the head reads {dim}")
    return values.reshape(len(column), dim)


def _arrow_fs(fs: AbstractFileSystem) -> pafs.FileSystem:
    return pafs.LocalFileSystem() if is_local(fs) else pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def scan_current(
    out: str | os.PathLike[str],
    model: str,
    plans: list[PartPlan],
    batch_rows: int = BATCH_ROWS,
    storage_options: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches (``READ_COLUMNS``) of ``model``'s current segments, per ``plans``; read
    through the local embedding cache in ``cache_dir`` (``embedding_cache``) when given."""
    fs, root = url_to_fs(normalize_out(out), **(storage_options or {}))
    arrow_fs = _arrow_fs(fs)
    folder = posixpath.join(root, S.SEGMENTS, f"{S.MODEL_PARTITION}={model}")
    options: dict[str, Any] = {"columns": list(READ_COLUMNS), "batch_size": batch_rows}
    options |= {"batch_readahead": 2, "fragment_readahead": 2}  # bounded memory: 1024-d rows are 4 KiB

    def read_part(part: str, wanted: ds.Expression | None = None) -> Iterator[pa.RecordBatch]:
        dataset = ds.dataset(posixpath.join(folder, part), format="parquet", filesystem=arrow_fs)
        return dataset.to_batches(filter=wanted, **options)

    if cache_dir is not None:
        cached = embedding_cache.cache_folder(cache_dir, out, model)
        for plan in plans:
            path = embedding_cache.cached_part(cached, plan.part, read_part)
            yield from embedding_cache.read_cached(path, plan.recording_ids)
        embedding_cache.prune(cached, {plan.part for plan in plans})
        return
    whole = [posixpath.join(folder, p.part) for p in plans if p.recording_ids is None]
    if whole:
        yield from ds.dataset(whole, format="parquet", filesystem=arrow_fs).to_batches(**options)
    for plan in plans:
        if plan.recording_ids is not None:
            yield from read_part(plan.part, ds.field(S.RECORDING_ID).isin(list(plan.recording_ids)))


def score_batches(
    batches: Iterator[pa.RecordBatch], head: LinearHead, model: str, name: str, head_version: str
) -> Iterator[pa.RecordBatch]:
    """Each batch of segments as a batch of ``HEAD_SCORES_SCHEMA`` rows."""
    for batch in batches:
        n = batch.num_rows
        if n == 0:
            continue
        scores = head.scores(embedding_matrix(batch.column(S.EMBEDDING), head.dim))
        columns = [
            pa.repeat(model, n),
            *(
                batch.column(c)
                for c in (S.RECORDING_ID, S.SEGMENT_INDEX, S.URI, S.START_S, S.END_S, S.RUN_ID)
            ),
            pa.repeat(name, n),
            pa.array(scores, pa.float32()),
            pa.repeat(head_version, n),
        ]
        yield pa.RecordBatch.from_arrays(columns, schema=HEAD_SCORES_SCHEMA)


def new_apply_id() -> str:
    """Sortable by start time: '<UTC time to the microsecond>Z-<random>'."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]


def remove_older_applies(fs: AbstractFileSystem, folder: str, apply_id: str) -> int:
    """Remove the part, marker and temporary files of applies older than ``apply_id``; how many."""
    removed = 0
    for path in sorted(fs.ls(folder, detail=False)):
        match = _APPLY_FILE.fullmatch(posixpath.basename(path))
        if match and (match.group("part") or match.group("commit")) < apply_id:
            fs.rm(path)
            removed += 1
    return removed


def apply_head(
    out: str | os.PathLike[str],
    name: str,
    rows_per_part: int = ROWS_PER_PART,
    batch_rows: int = BATCH_ROWS,
    storage_options: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ApplyResult:
    """Score every current segment of head ``name``'s model; replaces that head's earlier scores.
    ``cache_dir``: read embeddings through a local cache there (``embedding_cache``)."""
    if rows_per_part <= 0 or batch_rows <= 0:
        raise ValueError("rows per part and per batch must be positive")
    started = time.perf_counter()
    card, head = load_head(out, name, storage_options)
    plans = read_plan(out, card.model)
    if not plans:
        raise ValueError(f"model {card.model} of head {name} has no current segments in {normalize_out(out)}")
    fs, root = url_to_fs(normalize_out(out), **(storage_options or {}))
    folder = posixpath.join(root, HEAD_SCORES, f"{HEAD}={name}")
    apply_id = new_apply_id()
    batches = score_batches(
        scan_current(out, card.model, plans, batch_rows, storage_options, cache_dir),
        head,
        card.model,
        name,
        card.head_version,
    )
    n_segments, n_parts, pending, n_pending = 0, 0, [], 0
    for batch in batches:
        pending.append(batch)
        n_pending += batch.num_rows
        if n_pending >= rows_per_part:
            _write_part(fs, folder, apply_id, n_parts, pending)
            n_segments, n_parts, pending, n_pending = n_segments + n_pending, n_parts + 1, [], 0
    if pending:
        _write_part(fs, folder, apply_id, n_parts, pending)
        n_segments, n_parts = n_segments + n_pending, n_parts + 1
    marker: dict[str, Any] = {"apply_id": apply_id, "head": name, "head_version": card.head_version}
    marker |= {"model": card.model, "n_segments": n_segments, "n_parts": n_parts}
    marker["finished_at"] = datetime.now(UTC).isoformat()
    write_bytes_atomic(fs, posixpath.join(folder, f"commit-{apply_id}.json"), json.dumps(marker).encode())
    removed = remove_older_applies(fs, folder, apply_id)
    return ApplyResult(
        name, card.model, apply_id, n_segments, n_parts, removed, time.perf_counter() - started
    )


def _write_part(
    fs: AbstractFileSystem, folder: str, apply_id: str, seq: int, batches: list[pa.RecordBatch]
) -> None:
    table = pa.Table.from_batches(batches, schema=HEAD_SCORES_SCHEMA)
    write_parquet_atomic(fs, table, posixpath.join(folder, f"part-{apply_id}-{seq:05d}.parquet"))
