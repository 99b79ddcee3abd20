"""A local cache of stored embeddings for ``audify head apply --cache DIR``: each segments part
that lacks ``embedding_f16`` (written before the writer added it) copied once to an uncompressed
Arrow IPC file, then memory-mapped. Parts with ``embedding_f16`` never need it: their fixed-width
float16 copy decodes about as fast as the cache is read.

Decoding the zstd-compressed Parquet list of floats is what bounds an apply of such parts (about
0.5 GB/s of embeddings on two cores); a memory-mapped IPC file is read in place, so a second
apply (the next head, or a retrained one) runs at the speed of the matrix-vector product. A
segments part never changes once committed, so a cached copy never goes stale: the cache keeps
one file per part that still holds current rows and drops the others. It costs about the
embeddings' own size on local disk (4 KiB per segment of a 1024-d model).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from audify_batch.store import schema as S
from audify_batch.store.query import normalize_out

SUFFIX = ".arrow"


def cache_folder(cache_dir: str | os.PathLike[str], out: str | os.PathLike[str], model: str) -> Path:
    """``DIR/<hash of OUT>/model=<model>/``: one OUT's parts never meet another's."""
    key = hashlib.sha256(normalize_out(out).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / key / f"{S.MODEL_PARTITION}={model}"


def cached_part(folder: Path, part: str, read_part: Callable[[str], Iterator[pa.RecordBatch]]) -> Path:
    """The IPC copy of segments part ``part``, written from ``read_part(part)`` if missing."""
    path = folder / (part.removesuffix(".parquet") + SUFFIX)
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        writer: pa.ipc.RecordBatchFileWriter | None = None
        for batch in read_part(part):
            if writer is None:
                writer = pa.ipc.new_file(str(tmp), batch.schema)
            writer.write_batch(batch)
        if writer is None:
            raise ValueError(f"segments part {part} is empty")
        writer.close()
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_cached(path: Path, recording_ids: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
    """The batches of a cached part, memory-mapped (the arrays keep the mapping alive), filtered
    to ``recording_ids`` unless None."""
    reader = pa.ipc.open_file(pa.memory_map(str(path)))
    wanted = None if recording_ids is None else pa.array(list(recording_ids), pa.string())
    for i in range(reader.num_record_batches):
        batch = reader.get_batch(i)
        if wanted is not None:
            batch = batch.filter(pc.is_in(batch.column(S.RECORDING_ID), value_set=wanted))
        yield batch


def prune(folder: Path, keep: set[str]) -> int:
    """Remove the cached parts not named in ``keep`` (segments part file names); how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.glob(f"*{SUFFIX}"):
        if path.name.removesuffix(SUFFIX) + ".parquet" not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
