"""A fan-out's manifest: SOURCE listed once by the parent, each recording with the shard that labels it.

The parent lists SOURCE once and writes ``OUT/manifests/<batch_id>.parquet`` (atomically, through
fsspec, like the sink's parts); every shard run reads only its slice, a filter on ``shard_index``
that skips the other shards' row groups. N shards then cost one listing instead of 2N. A slice
holds exactly the recordings that listing SOURCE and keeping ``in_shard`` would give, so a shard
labels the same recordings either way. The manifest stays under OUT as the record of what the
batch saw; a re-run shard reads the same slice.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
from fsspec.core import url_to_fs

from audify_batch.ingest.sources import RecordingRef, discover_all
from audify_batch.run.shards import Shard, shard_of
from audify_batch.store import schema as S
from audify_batch.store.sink import write_parquet_atomic

ROW_GROUP_ROWS = 16_384  # rows sorted by shard: a shard's slice reads one or a few row groups
SOURCES_KEY = b"audify.sources"


@dataclass(frozen=True)
class Manifest:
    """A written manifest: where it is, how many recordings it lists, into how many shards."""

    uri: str
    n_recordings: int
    shard_count: int


def manifest_uri(out: str, batch_id: str) -> str:
    """Where the manifest of ``batch_id`` lives: ``OUT/manifests/<batch_id>.parquet``."""
    return posixpath.join(out.rstrip("/"), S.manifest_path(batch_id))


def _sources(source: str | Sequence[str]) -> tuple[str, ...]:
    return (source,) if isinstance(source, str) else tuple(source)


def manifest_table(refs: Sequence[RecordingRef], shard_count: int, source: str | Sequence[str]) -> pa.Table:
    """The manifest rows of ``refs``, sorted by shard then URI; shard count and SOURCE as metadata."""
    if shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    rows = sorted(((shard_of(r.uri, shard_count), r) for r in refs), key=lambda pair: (pair[0], pair[1].uri))
    columns = {
        S.URI: [r.uri for _, r in rows],
        S.SIZE_BYTES: [r.size_bytes for _, r in rows],
        S.MTIME_S: [r.mtime_s for _, r in rows],
        S.RECORDING_ID: [r.recording_id for _, r in rows],
        S.ERROR: [r.error for _, r in rows],
        S.SHARD_INDEX: [index for index, _ in rows],
    }
    metadata = {
        S.MANIFEST_SHARD_COUNT_KEY: str(shard_count).encode(),
        SOURCES_KEY: json.dumps(list(_sources(source))).encode(),
    }
    return pa.Table.from_pydict(columns, schema=S.MANIFEST_SCHEMA.with_metadata(metadata))


def write_manifest(table: pa.Table, uri: str, storage_options: dict[str, Any] | None = None) -> None:
    fs, path = url_to_fs(uri, **(storage_options or {}))
    write_parquet_atomic(fs, table, path, row_group_size=ROW_GROUP_ROWS)


def create_manifest(
    source: str | Sequence[str],
    out: str,
    batch_id: str,
    shard_count: int,
    storage_options: dict[str, Any] | None = None,
) -> Manifest:
    """List SOURCE (the one listing of a fan-out) and write its manifest under OUT."""
    refs = discover_all(source, storage_options)
    uri = manifest_uri(out, batch_id)
    write_manifest(manifest_table(refs, shard_count, source), uri, storage_options)
    return Manifest(uri, len(refs), shard_count)


def read_manifest_slice(
    uri: str,
    shard: Shard,
    source: str | Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[RecordingRef]:
    """The recordings of ``shard`` in the manifest at ``uri``, sorted by URI; reads only that slice.

    Raises ``ValueError`` when the manifest splits into another number of shards, or (``source``
    given) lists another SOURCE than this run's.
    """
    fs, path = url_to_fs(uri, **(storage_options or {}))
    if not fs.exists(path):
        raise FileNotFoundError(f"no manifest at {uri}")
    dataset = ds.dataset(path, filesystem=fs, format="parquet")
    metadata = dataset.schema.metadata or {}
    count = int(metadata.get(S.MANIFEST_SHARD_COUNT_KEY, b"0"))
    if count != shard.count:
        raise ValueError(f"manifest {uri} splits into {count} shards; this run is shard {shard.name}")
    listed = tuple(json.loads(metadata.get(SOURCES_KEY, b"[]")))
    if source is not None and listed != _sources(source):
        raise ValueError(
            f"manifest {uri} lists {list(listed)}, not this run's source {list(_sources(source))}"
        )
    table = dataset.to_table(
        columns=[S.URI, S.SIZE_BYTES, S.MTIME_S, S.ERROR], filter=ds.field(S.SHARD_INDEX) == shard.index
    )
    return [
        RecordingRef(row[S.URI], row[S.SIZE_BYTES], row[S.MTIME_S], row[S.ERROR])
        for row in table.sort_by(S.URI).to_pylist()
    ]
