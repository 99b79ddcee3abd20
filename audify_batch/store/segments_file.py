"""How a segments part is laid out in Parquet: the writer's derived ``embedding_f16`` column and
the per-column encodings, compression and statistics of every segments file (the one writer's,
``store/sink.py``).

- ``embedding`` (a list of float32, what SQL reads): zstd, no dictionary (its floats are distinct).
- ``embedding_f16`` (the same vector as float16 bytes, what custom heads read): uncompressed, no
  dictionary, no statistics. zstd saves 30 % of it on real embeddings but decodes at a fifth of
  the speed, lz4 saves 3 %; uncompressed it decodes at about 3 M segments/s on one core.
- Every other column: zstd, dictionary-encoded (labels, uris and ids repeat).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import pyarrow as pa

from audify_batch.store import schema as S

F16_MAX = 65504.0  # the largest finite float16: larger magnitudes are clipped, never made infinite
CODEC = "zstd"
_PLAIN = (S.EMBEDDING, S.EMBEDDING_F16)  # written without a dictionary
_NESTED = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)


def leaf_path(field: pa.Field) -> str:
    """The Parquet column path of a top-level field (lists of scalars: ``<name>.list.element``)."""
    return f"{field.name}.list.element" if any(is_(field.type) for is_ in _NESTED) else field.name


def dictionary_columns(schema: pa.Schema, plain: Collection[str] = _PLAIN) -> list[str]:
    """Parquet leaf paths of ``schema``'s columns, but those named in ``plain``.

    The embeddings are written without dictionary encoding: their values are all distinct, so the
    writer would build a dictionary page and its hash table for each row group only to drop
    them (measured: 2.8x the pool memory of a 4 MiB 1024-d row group, and an 18% larger file).
    """
    return [leaf_path(f) for f in schema if f.name not in plain]


def write_options(schema: pa.Schema) -> dict[str, Any]:
    """``pyarrow.parquet`` writer options for a segments file of ``schema``."""
    return {
        "compression": {leaf_path(f): ("none" if f.name == S.EMBEDDING_F16 else CODEC) for f in schema},
        "use_dictionary": dictionary_columns(schema),
        "write_statistics": [leaf_path(f) for f in schema if f.name != S.EMBEDDING_F16],
    }


def stored_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` (of built segments rows) with ``embedding_f16`` appended, unless already there."""
    if S.EMBEDDING_F16 in schema.names:
        return schema
    dim = schema.field(S.EMBEDDING).type.list_size
    return schema.append(S.embedding_f16_field(dim))


def with_embedding_f16(segments: pa.Table) -> pa.Table:
    """``segments`` with ``embedding_f16`` derived from ``embedding`` (unless already there)."""
    if S.EMBEDDING_F16 in segments.schema.names:
        return segments
    dim = segments.schema.field(S.EMBEDDING).type.list_size
    column = segments.column(S.EMBEDDING).combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False)
    if values.size != len(column) * dim:
        raise ValueError(f"segments embeddings hold {values.size} values, expected {len(column)} x {dim}")
    half = np.clip(values, -F16_MAX, F16_MAX).astype("<f2")  # NaN stays NaN
    array = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(2 * dim), len(column), [None, pa.py_buffer(half.tobytes())]
    )
    return segments.append_column(S.embedding_f16_field(dim), array)


def embedding_f16_matrix(column: pa.Array | pa.ChunkedArray, dim: int) -> np.ndarray:
    """(N, D) float16 view of an ``embedding_f16`` column (a copy only when it has several chunks)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    width = 2 * dim
    if column.type != pa.binary(width):
        raise ValueError(f"embedding_f16 of type {column.type}, the head reads {dim} dimensions")
    n = len(column)
    if n == 0:
        return np.empty((0, dim), dtype="<f2")
    data = column.buffers()[1]
    start = column.offset * width
    return np.frombuffer(data, dtype="<f2", count=n * dim, offset=start).reshape(n, dim)
