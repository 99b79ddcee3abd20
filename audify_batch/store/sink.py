"""The one writer: Parquet parts under OUT, each written under a temporary name and renamed.

A part is a segments file and a recordings file of the same name; the
recordings file is written second and is the commit record. On start the
sink removes debris a killed run left behind (temporary files, segments
parts without their recordings part), so a resumed run neither duplicates
nor loses rows.
"""

from __future__ import annotations

import posixpath
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from audify_batch.fs import is_local
from audify_batch.store import query as Q
from audify_batch.store import schema as S

TMP_SUFFIX = ".tmp"


def write_parquet_atomic(fs: AbstractFileSystem, table: pa.Table, path: str, **options: Any) -> None:
    """Write ``table`` to ``path`` atomically (rename on local disk, one PUT on object stores).

    ``options`` go to ``pyarrow.parquet.write_table`` (e.g. ``row_group_size``).
    """
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    target = f"{path}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}" if is_local(fs) else path
    with fs.open(target, "wb") as handle:
        pq.write_table(table, handle, compression="zstd", **options)
    if target != path:
        fs.mv(target, path)


@dataclass(frozen=True)
class FileKey:
    """What makes a recording 'unchanged' for reruns."""

    uri: str
    size_bytes: int
    mtime_s: float


class ParquetSink:
    def __init__(
        self,
        out: str,
        model_name: str,
        model_version: str,
        run_id: str,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.out = out
        self.fs, self.root = url_to_fs(out, **(storage_options or {}))
        self.model = S.model_label(model_name, model_version)
        self.partition = S.model_partition(model_name, model_version)
        self.run_id = run_id
        self._seq = 0
        self._run_seq = 0
        self._local = is_local(self.fs)

    def folder(self, table: str) -> str:
        return posixpath.join(self.root, table, self.partition)

    def _write(self, table: pa.Table, path: str) -> None:
        write_parquet_atomic(self.fs, table, path)

    def remove_debris(self) -> int:
        """Delete temporary files and uncommitted segments parts; returns how many."""
        removed = 0
        for table in (S.SEGMENTS, S.RECORDINGS, S.RUNS):
            folder = self.folder(table)
            self.fs.invalidate_cache(folder)
            if not self.fs.exists(folder):
                continue
            for path in self.fs.ls(folder, detail=False):
                if path.endswith(TMP_SUFFIX):
                    self.fs.rm(path)
                    removed += 1
        committed = set(self._names(S.RECORDINGS))
        for name in self._names(S.SEGMENTS):
            if name not in committed:
                self.fs.rm(posixpath.join(self.folder(S.SEGMENTS), name))
                removed += 1
        return removed

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
        """Recordings whose latest labeled-or-failed row is 'labeled' with these settings.

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
        return {uri: FileKey(uri, size, mtime) for uri, size, mtime in result.rows}

    def write_part(self, segments: pa.Table, recordings: pa.Table) -> str:
        """Commit one part: segments first, then the recordings file that makes it visible."""
        name = f"part-{self.run_id}-{self._seq:05d}.parquet"
        self._seq += 1
        if segments.num_rows:
            self._write(segments, posixpath.join(self.folder(S.SEGMENTS), name))
        self._write(recordings, posixpath.join(self.folder(S.RECORDINGS), name))
        return name

    def write_run(self, run_row: dict[str, Any]) -> None:
        """A new file per state (never overwritten: a reader may be reading the last one)."""
        table = pa.Table.from_pylist([run_row], schema=S.RUNS_SCHEMA)
        name = f"run-{self.run_id}-{self._run_seq:02d}.parquet"
        self._run_seq += 1
        self._write(table, posixpath.join(self.folder(S.RUNS), name))
