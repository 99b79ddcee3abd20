"""``audify head apply``: score every current segment of a head's model from its stored embeddings
(no audio decoded), streamed, and write the scores under ``OUT/head_scores/head=<NAME>/``.

Which rows are current comes from the ``recordings`` view (the one definition): the segments
parts holding current recordings are read with pyarrow, whole where every recording in them is
current, else filtered to those that are; debris and superseded rows are never read as current.
Parts that carry ``embedding_f16`` (every part written since it exists) are read through it: a
fixed-width float16 column Parquet decodes at memory speed, viewed as an (N, D) matrix without a
copy, widened to float32 in cache-sized blocks and scored with a matrix-vector product. Older parts
are read through their list of float32 (``embedding``), a few times slower, optionally through a
local cache (``embedding_cache``).

Rerun policy: an apply writes its parts as ``part-<apply_id>-<seq>.parquet`` (each whole or not
at all), then the marker ``commit-<apply_id>.json``, and only then removes the files of older
applies of that head (debris of killed ones included). The ``head_scores`` view shows the latest
committed apply of each head: before the marker, readers still see the previous scores; after
it, the new ones; never a mix. One apply of a head at a time: an apply holds a lease on its
head's folder (``store/lease.py``), and a second one fails at once with ``OutputBusyError``
instead of deleting the first one's files. Apply ids come from the clock, and always sort after
every committed apply's (``later_apply_id``): a clock set back, or another host's clock, never
hides a new apply behind an older one.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from audify_batch.fs import is_local
from audify_batch.review import embedding_cache
from audify_batch.review.head_fit import LinearHead
from audify_batch.review.heads import load_head
from audify_batch.store import schema as S
from audify_batch.store.lease import OutputBusyError, hold_lease
from audify_batch.store.query import connect, fetch_file, normalize_out
from audify_batch.store.segments_file import embedding_f16_matrix
from audify_batch.store.sink import write_bytes_atomic, write_parquet_atomic

HEAD_SCORES = "head_scores"  # folder under OUT
HEAD = "head"
SCORE = "score"
HEAD_VERSION = "head_version"
BATCH_ROWS = 65_536  # segments per record batch read
ROWS_PER_PART = 1_000_000  # segments per written part
WIDEN_ROWS = 1024  # float16 rows widened to float32 at a time: 4 MiB of a 1024-d model, in cache
KEY_COLUMNS = (S.RECORDING_ID, S.SEGMENT_INDEX, S.URI, S.START_S, S.END_S, S.RUN_ID)
READ_COLUMNS = (*KEY_COLUMNS, S.EMBEDDING)
READ_COLUMNS_F16 = (*KEY_COLUMNS, S.EMBEDDING_F16)
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


def half_products(x16: np.ndarray, weight: np.ndarray, block_rows: int = WIDEN_ROWS) -> np.ndarray:
    """(N,) float32 ``x16 @ weight`` of (N, D) float16 rows, each block of rows widened to float32
    first: float32 sums of the exact float16 values (torch widens with the CPU's vector units,
    about 30x numpy's ``astype``), into one reused block (a new one each time costs page faults).

    On one torch thread, restored after: the Parquet reader decodes the next batches on the other
    cores meanwhile, and two thread pools on the same cores made the widening 3x slower (measured).
    """
    with warnings.catch_warnings():  # a view of Arrow's read-only buffer, only ever read
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        rows = torch.from_numpy(x16)
    w = torch.from_numpy(weight)
    out = torch.empty(len(x16), dtype=torch.float32)
    block = torch.empty((min(block_rows, len(x16)), x16.shape[1]), dtype=torch.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for start in range(0, len(x16), block_rows):
            stop = min(start + block_rows, len(x16))
            widened = block[: stop - start]
            widened.copy_(rows[start:stop])
            torch.mv(widened, w, out=out[start:stop])
    finally:
        torch.set_num_threads(threads)
    return out.numpy()


def has_f16(arrow_fs: pafs.FileSystem, path: str, dim: int) -> bool:
    """Whether the segments part at ``path`` carries ``embedding_f16`` of ``dim`` dimensions."""
    schema = pq.read_schema(path, filesystem=arrow_fs)
    return S.EMBEDDING_F16 in schema.names and schema.field(S.EMBEDDING_F16).type == pa.binary(2 * dim)


def scan_current(
    out: str | os.PathLike[str],
    model: str,
    plans: list[PartPlan],
    dim: int,
    batch_rows: int = BATCH_ROWS,
    storage_options: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``model``'s current segments, per ``plans``: ``READ_COLUMNS_F16`` from the
    parts that carry ``embedding_f16`` of ``dim`` dimensions, ``READ_COLUMNS`` from the others
    (read through the local embedding cache in ``cache_dir`` when given: ``embedding_cache``)."""
    fs, root = url_to_fs(normalize_out(out), **(storage_options or {}))
    arrow_fs = _arrow_fs(fs)
    folder = posixpath.join(root, S.SEGMENTS, f"{S.MODEL_PARTITION}={model}")
    readahead = {"batch_size": batch_rows, "batch_readahead": 2, "fragment_readahead": 2}
    with_f16 = {p.part for p in plans if has_f16(arrow_fs, posixpath.join(folder, p.part), dim)}
    half = [p for p in plans if p.part in with_f16]
    full = [p for p in plans if p.part not in with_f16]

    def read(columns: tuple[str, ...], parts: list[PartPlan]) -> Iterator[pa.RecordBatch]:
        options = readahead | {"columns": list(columns)}  # bounded memory: a few batches in flight
        whole = [posixpath.join(folder, p.part) for p in parts if p.recording_ids is None]
        if whole:
            yield from ds.dataset(whole, format="parquet", filesystem=arrow_fs).to_batches(**options)
        for plan in parts:
            if plan.recording_ids is not None:
                wanted = ds.field(S.RECORDING_ID).isin(list(plan.recording_ids))
                dataset = ds.dataset(posixpath.join(folder, plan.part), format="parquet", filesystem=arrow_fs)
                yield from dataset.to_batches(filter=wanted, **options)

    yield from read(READ_COLUMNS_F16, half)
    if cache_dir is None:
        yield from read(READ_COLUMNS, full)
        return
    cached = embedding_cache.cache_folder(cache_dir, out, model)
    for plan in full:
        path = embedding_cache.cached_part(
            cached, plan.part, lambda part: read(READ_COLUMNS, [PartPlan(part, None)])
        )
        yield from embedding_cache.read_cached(path, plan.recording_ids)
    embedding_cache.prune(cached, {plan.part for plan in full})


def batch_scores(batch: pa.RecordBatch, head: LinearHead) -> np.ndarray:
    """The head's scores of a batch of ``READ_COLUMNS_F16`` or ``READ_COLUMNS``."""
    if S.EMBEDDING_F16 in batch.schema.names:
        x16 = embedding_f16_matrix(batch.column(S.EMBEDDING_F16), head.dim)
        return head.scores_of_products(half_products(x16, head.weight))
    return head.scores(embedding_matrix(batch.column(S.EMBEDDING), head.dim))


def score_batches(
    batches: Iterator[pa.RecordBatch], head: LinearHead, model: str, name: str, head_version: str
) -> Iterator[pa.RecordBatch]:
    """Each batch of segments as a batch of ``HEAD_SCORES_SCHEMA`` rows."""
    for batch in batches:
        n = batch.num_rows
        if n == 0:
            continue
        columns = [
            pa.repeat(model, n),
            *(batch.column(c) for c in KEY_COLUMNS),
            pa.repeat(name, n),
            pa.array(batch_scores(batch, head), pa.float32()),
            pa.repeat(head_version, n),
        ]
        yield pa.RecordBatch.from_arrays(columns, schema=HEAD_SCORES_SCHEMA)


def new_apply_id() -> str:
    """Sortable by start time: '<UTC time to the microsecond>Z-<random>'."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]


def later_apply_id(fs: AbstractFileSystem, folder: str, apply_id: str) -> str:
    """``apply_id``, or where a committed apply's id sorts after it (a clock set back), that id
    extended: the latest committed apply is the one the ``head_scores`` view shows."""
    committed = [
        match.group("commit")
        for path in (fs.ls(folder, detail=False) if fs.isdir(folder) else [])
        if (match := _APPLY_FILE.fullmatch(posixpath.basename(path))) and match.group("commit")
    ]
    latest = max(committed, default="")
    return apply_id if apply_id > latest else f"{latest}.{uuid.uuid4().hex[:6]}"


def remove_older_applies(fs: AbstractFileSystem, folder: str, apply_id: str) -> int:
    """Remove the part, marker and temporary files of applies older than ``apply_id``; how many."""
    removed = 0
    for path in sorted(fs.ls(folder, detail=False)):
        match = _APPLY_FILE.fullmatch(posixpath.basename(path))
        if match and (match.group("part") or match.group("commit")) < apply_id:
            fs.rm(path)
            removed += 1
    return removed


@contextmanager
def one_apply_at_a_time(
    out: str | os.PathLike[str], name: str, storage_options: dict[str, Any] | None
) -> Iterator[None]:
    """Hold the lease on head ``name``'s folder for the block; ``OutputBusyError`` while another
    apply of that head holds it."""
    url = posixpath.join(normalize_out(out), HEAD_SCORES, f"{HEAD}={name}")
    with ExitStack() as held:
        try:
            held.enter_context(hold_lease(url, f"head-apply-{name}", storage_options))
        except OutputBusyError as busy:
            raise OutputBusyError(f"another apply of head {name} is running: {busy}") from None
        yield


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
    batches = score_batches(
        scan_current(out, card.model, plans, head.dim, batch_rows, storage_options, cache_dir),
        head,
        card.model,
        name,
        card.head_version,
    )
    with one_apply_at_a_time(out, name, storage_options):
        apply_id = later_apply_id(fs, folder, new_apply_id())
        n_segments, n_parts = _write_parts(fs, folder, apply_id, batches, rows_per_part)
        marker: dict[str, Any] = {"apply_id": apply_id, "head": name, "head_version": card.head_version}
        marker |= {"model": card.model, "n_segments": n_segments, "n_parts": n_parts}
        marker["finished_at"] = datetime.now(UTC).isoformat()
        write_bytes_atomic(fs, posixpath.join(folder, f"commit-{apply_id}.json"), json.dumps(marker).encode())
        removed = remove_older_applies(fs, folder, apply_id)
    return ApplyResult(
        name, card.model, apply_id, n_segments, n_parts, removed, time.perf_counter() - started
    )


def _write_parts(
    fs: AbstractFileSystem, folder: str, apply_id: str, batches: Iterator[pa.RecordBatch], rows_per_part: int
) -> tuple[int, int]:
    """Write ``batches`` as parts of about ``rows_per_part`` rows; (segments, parts) written."""
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
    return n_segments, n_parts


def _write_part(
    fs: AbstractFileSystem, folder: str, apply_id: str, seq: int, batches: list[pa.RecordBatch]
) -> None:
    table = pa.Table.from_batches(batches, schema=HEAD_SCORES_SCHEMA)
    write_parquet_atomic(fs, table, posixpath.join(folder, f"part-{apply_id}-{seq:05d}.parquet"))
