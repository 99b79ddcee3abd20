"""The one writer: Parquet parts under OUT, each written under a temporary name and renamed.

A part is a segments file and a recordings file of the same name; the
recordings file is written second and is the commit record. A run that took
the lease on OUT from nobody (``store/lease.py``) removes the debris killed
runs left behind (temporary files, segments parts without their recordings
part), sparing the files of the lease's live holders, and marks runs left
``running`` as ``interrupted``; so a resumed run neither duplicates nor loses
rows, and no live run's files are ever removed.
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from audify_batch.fs import is_local
from audify_batch.store import query as Q
from audify_batch.store import schema as S
from audify_batch.store import segments_file as SF

TMP_SUFFIX = ".tmp"
STREAM_BLOCK_BYTES = 8 << 20  # upload part size of a streamed segments file on object stores


@contextmanager
def open_atomic(fs: AbstractFileSystem, path: str) -> Iterator[Any]:
    """A binary file handle whose content appears at ``path`` whole or not at all: written under a
    temporary name and renamed on local disk, one PUT on object stores (no object until closed)."""
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    target = f"{path}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}" if is_local(fs) else path
    with fs.open(target, "wb") as handle:
        yield handle
    if target != path:
        fs.mv(target, path)


def write_parquet_atomic(fs: AbstractFileSystem, table: pa.Table, path: str, **options: Any) -> None:
    """Write ``table`` to ``path`` atomically; ``options`` go to ``pyarrow.parquet.write_table``."""
    with open_atomic(fs, path) as handle:
        pq.write_table(table, handle, **({"compression": "zstd"} | options))


def write_bytes_atomic(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all."""
    with open_atomic(fs, path) as handle:
        handle.write(data)


@dataclass(frozen=True)
class FileKey:
    """What makes a recording 'unchanged' for reruns: the same uri, size, modification time and
    content fingerprint (``ingest.sources.fingerprint``; None: unknown, never unchanged)."""

    uri: str
    size_bytes: int
    mtime_s: float
    fingerprint: str | None = None


class ParquetSink:
    def __init__(
        self,
        out: str,
        model_name: str,
        model_version: str,
        run_id: str,
        storage_options: dict[str, Any] | None = None,
        float16_copy: bool = True,
    ) -> None:
        self.out = out
        self.float16_copy = float16_copy  # segments parts carry embedding_f16 (store/segments_file.py)
        self.fs, self.root = url_to_fs(out, **(storage_options or {}))
        self.model = S.model_label(model_name, model_version)
        self.partition = S.model_partition(model_name, model_version)
        self.run_id = run_id
        self._seq = 0
        self._run_seq = 0
        self._local = is_local(self.fs)
        self.guard: Callable[[], None] | None = None  # called before each commit (the lease check)

    def folder(self, table: str) -> str:
        return posixpath.join(self.root, table, self.partition)

    def _write(self, table: pa.Table, path: str) -> None:
        write_parquet_atomic(self.fs, table, path)

    def remove_debris(self, live_run_ids: Collection[str] = ()) -> int:
        """Delete temporary files and uncommitted segments parts; returns how many.

        Call it only while holding the lease on OUT: files of ``live_run_ids`` (the lease's
        holders, still writing) are spared, every other writer is provably dead.
        """
        removed = 0
        for table in (S.SEGMENTS, S.RECORDINGS, S.RUNS):
            folder = self.folder(table)
            self.fs.invalidate_cache(folder)
            if not self.fs.exists(folder):
                continue
            for path in self.fs.ls(folder, detail=False):
                if path.endswith(TMP_SUFFIX) and not _written_by(path, live_run_ids):
                    self.fs.rm(path)
                    removed += 1
        committed = set(self._names(S.RECORDINGS))
        for name in self._names(S.SEGMENTS):
            if name not in committed and not _written_by(name, live_run_ids):
                self.fs.rm(posixpath.join(self.folder(S.SEGMENTS), name))
                removed += 1
        return removed

    def mark_interrupted(self, live_run_ids: Collection[str] = ()) -> list[str]:
        """Runs of any model still ``running`` that are not live: a new ``interrupted`` state each.

        Call it only while holding the lease on OUT (the holders are ``live_run_ids``): any other
        run still ``running`` was killed. Run rows are append-only; the ``runs`` view keeps the
        latest state. Returns the run ids marked.
        """
        self.fs.invalidate_cache(posixpath.join(self.root, S.RUNS))
        paths = self.fs.glob(posixpath.join(self.root, S.RUNS, f"{S.MODEL_PARTITION}=*", "run-*.parquet"))
        if not paths:
            return []
        rows = ds.dataset(paths, schema=S.RUNS_SCHEMA, filesystem=self.fs, format="parquet").to_table()
        ended = {r[S.RUN_ID] for r in rows.to_pylist() if r[S.RUN_STATUS] != S.RUN_RUNNING}
        stale = {
            r[S.RUN_ID]: r
            for r in rows.to_pylist()
            if r[S.RUN_ID] not in ended and r[S.RUN_ID] not in live_run_ids
        }
        for run_id, row in sorted(stale.items()):
            marked = {**row, S.RUN_STATUS: S.RUN_INTERRUPTED, S.FINISHED_AT: datetime.now(UTC)}
            folder = posixpath.join(
                self.root, S.RUNS, S.model_partition(row[S.MODEL_NAME], row[S.MODEL_VERSION])
            )
            table = pa.Table.from_pylist([marked], schema=S.RUNS_SCHEMA)
            self._write(table, posixpath.join(folder, f"run-{run_id}-interrupted.parquet"))
        return sorted(stale)

    def _names(self, table: str) -> list[str]:
        folder = self.folder(table)
        self.fs.invalidate_cache(folder)  # object-store listings are cached per filesystem instance
        if not self.fs.exists(folder):
            return []
        return [posixpath.basename(p) for p in self.fs.ls(folder, detail=False) if p.endswith(".parquet")]

    def read_recordings(self) -> pa.Table:
        """Every committed recordings row of this model (empty table when none)."""
        return self._read(S.RECORDINGS, S.RECORDINGS_SCHEMA)

    def read_runs(self) -> pa.Table:
        """Every run row of this model (empty table when none)."""
        return self._read(S.RUNS, S.RUNS_SCHEMA)

    def _read(self, table: str, schema: pa.Schema) -> pa.Table:
        paths = [posixpath.join(self.folder(table), n) for n in sorted(self._names(table))]
        if not paths:
            return schema.empty_table()
        return ds.dataset(paths, schema=schema, filesystem=self.fs, format="parquet").to_table()

    def labeled_keys(self, config_hash: str) -> dict[str, FileKey]:
        """Recordings whose latest labeled-or-failed row is 'labeled' (or 'partial') with these settings.

        DuckDB computes the set (``sql/labeled_keys.sql`` over the ``recordings`` view of
        ``sql/views.sql``, the one definition of a recording's current state) over this model's
        committed recordings parts; only the labeled keys come back to Python.
        """
        if not self._names(S.RECORDINGS):  # also refreshes a cached object-store listing
            return {}
        filesystem = None if self._local else self.fs
        con = Q.connect(self.out, embedding_dim=1, filesystem=filesystem)  # D: no embedding is read
        try:
            result = Q.fetch_file(con, "labeled_keys", {"model": self.model, "config_hash": config_hash})
        finally:
            con.close()
        return {uri: FileKey(uri, size, mtime, print_) for uri, size, mtime, print_ in result.rows}

    def write_part(self, segments: pa.Table, recordings: pa.Table) -> str:
        """Commit one part: segments first, then the recordings file that makes it visible."""
        if self.guard:
            self.guard()
        name = self._next_part_name()
        if segments.num_rows:
            path = posixpath.join(self.folder(S.SEGMENTS), name)
            if self.float16_copy:
                segments = SF.with_embedding_f16(segments)
            write_parquet_atomic(self.fs, segments, path, **SF.write_options(segments.schema))
        self._write(recordings, posixpath.join(self.folder(S.RECORDINGS), name))
        return name

    def _next_part_name(self) -> str:
        name = f"part-{self.run_id}-{self._seq:05d}.parquet"
        self._seq += 1
        return name

    def open_part(self, schema: pa.Schema) -> PartWriter:
        """A part whose segments are written as they come (a recording too long to hold in memory);
        it is debris, like any segments file without its recordings file, until committed."""
        return PartWriter(self, self._next_part_name(), schema)

    def write_run(self, run_row: dict[str, Any]) -> None:
        """A new file per state (never overwritten: a reader may be reading the last one)."""
        table = pa.Table.from_pylist([run_row], schema=S.RUNS_SCHEMA)
        name = f"run-{self.run_id}-{self._run_seq:02d}.parquet"
        self._run_seq += 1
        self._write(table, posixpath.join(self.folder(S.RUNS), name))


class PartWriter:
    """The segments file of one part, one row group per ``write``; ``commit`` then writes the
    recordings file that makes it visible, ``abort`` removes it.

    On local disk it is written under a temporary name and renamed at commit; on an object
    store it is one multipart upload (no object until it completes) in parts of
    ``STREAM_BLOCK_BYTES``, the most it buffers.
    """

    def __init__(self, sink: ParquetSink, name: str, schema: pa.Schema) -> None:
        self.sink = sink
        self.name = name
        self.path = posixpath.join(sink.folder(S.SEGMENTS), name)
        sink.fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
        local = is_local(sink.fs)
        self._target = f"{self.path}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}" if local else self.path
        self._handle = sink.fs.open(
            self._target, "wb", **({} if local else {"block_size": STREAM_BLOCK_BYTES})
        )
        self._float16_copy = sink.float16_copy
        stored = SF.stored_schema(schema) if self._float16_copy else schema
        self._writer = pq.ParquetWriter(self._handle, stored, **SF.write_options(stored))

    def write(self, segments: pa.Table) -> None:
        self._writer.write_table(SF.with_embedding_f16(segments) if self._float16_copy else segments)

    def commit(self, recordings: pa.Table) -> str:
        """Finish the segments file, then write the recordings file of the same name."""
        if self.sink.guard:
            self.sink.guard()
        self._close()
        if self._target != self.path:
            self.sink.fs.mv(self._target, self.path)
        self.sink._write(recordings, posixpath.join(self.sink.folder(S.RECORDINGS), self.name))
        return self.name

    def abort(self) -> None:
        """Remove what was written: the recording failed."""
        self._close()
        self.sink.fs.rm(self._target)

    def _close(self) -> None:
        self._writer.close()
        self._handle.close()


def _written_by(path: str, run_ids: Collection[str]) -> bool:
    """Whether a part or run file (or its temporary file) belongs to one of ``run_ids``."""
    name = posixpath.basename(path)
    return any(name.startswith((f"part-{run_id}-", f"run-{run_id}-")) for run_id in run_ids)
