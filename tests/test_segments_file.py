"""The float16 copy of each embedding that the writer adds (store/segments_file.py) and how custom
heads read it (review/head_apply.py): exact float16 values, views that honour slices, float32 sums;
``audify label --no-float16-copy`` leaves it out, and the choice never relabels anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from audify_batch.cli.main import main
from audify_batch.review.head_apply import half_products
from audify_batch.store import schema as S
from audify_batch.store.segments_file import (
    F16_MAX,
    embedding_f16_matrix,
    stored_schema,
    with_embedding_f16,
)
from tests.conftest import write_noise


def embeddings_table(x: np.ndarray) -> pa.Table:
    column = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])
    return pa.table({S.RECORDING_ID: [f"r{i}" for i in range(len(x))], S.EMBEDDING: column})


def test_the_copy_is_the_float16_of_each_embedding_and_large_values_stay_finite() -> None:
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    x[1, 2], x[3, 0] = 1e6, -1e9  # beyond float16: clipped to its largest finite value, not inf
    table = with_embedding_f16(embeddings_table(x))
    assert table.schema.field(S.EMBEDDING_F16).type == pa.binary(12)
    assert with_embedding_f16(table) is table  # derived once
    stored = embedding_f16_matrix(table.column(S.EMBEDDING_F16), 6)
    assert stored.dtype == np.float16 and stored.shape == (5, 6)
    expected = np.clip(x, -F16_MAX, F16_MAX).astype(np.float16)
    assert np.array_equal(stored, expected)
    assert np.isfinite(stored).all() and stored[1, 2] == F16_MAX and stored[3, 0] == -F16_MAX


def test_the_matrix_view_honours_slices_and_refuses_another_width() -> None:
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    column = with_embedding_f16(embeddings_table(x)).column(S.EMBEDDING_F16).combine_chunks()
    assert np.array_equal(embedding_f16_matrix(column.slice(3, 4), 4), x[3:7].astype(np.float16))
    assert embedding_f16_matrix(column.slice(0, 0), 4).shape == (0, 4)
    with pytest.raises(ValueError, match="reads 8 dimensions"):
        embedding_f16_matrix(column, 8)


def test_stored_schema_appends_the_copy_once() -> None:
    schema = S.segments_schema(16)
    stored = stored_schema(schema)
    assert stored.names == [*schema.names, S.EMBEDDING_F16]
    assert stored.field(S.EMBEDDING_F16) == S.embedding_f16_field(16) and stored_schema(stored) is stored


def test_half_products_are_float32_sums_of_the_float16_values_across_blocks() -> None:
    rng = np.random.default_rng(1)
    x16 = (rng.standard_normal((2500, 64)) * 3).astype(np.float16)
    weight = rng.standard_normal(64).astype(np.float32)
    threads = torch.get_num_threads()
    products = half_products(x16, weight, block_rows=1024)  # two whole blocks and a short one
    assert torch.get_num_threads() == threads  # restored
    expected = x16.astype(np.float64) @ weight.astype(np.float64)
    assert products.dtype == np.float32 and products.shape == (2500,)
    assert np.allclose(products, expected, rtol=1e-5, atol=1e-4)
    # Rounding each product to float16 (what a float16 matrix-vector product returns) would not be.
    assert not np.allclose(expected.astype(np.float16), expected, rtol=1e-5, atol=1e-4)
    assert half_products(x16[:0], weight).shape == (0,)


def segments_parts(out: Path) -> list[Path]:
    return sorted((out / S.SEGMENTS).glob("model=*/part-*.parquet"))


def test_label_writes_the_copy_unless_told_not_to_and_it_never_relabels(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    write_noise(archive / "a.wav", 12.0, seed=1)
    base = ["label", str(archive), "--model", str(tiny_model_dir), "--workers", "0", "--no-progress"]
    with_copy, without = tmp_path / "with", tmp_path / "without"
    assert main([*base, "--out", str(with_copy)]) == 0
    assert main([*base, "--out", str(without), "--no-float16-copy"]) == 0
    (part,) = segments_parts(with_copy)
    (plain,) = segments_parts(without)
    assert S.EMBEDDING_F16 in pq.read_schema(part).names
    assert S.EMBEDDING_F16 not in pq.read_schema(plain).names
    rows = pq.read_table(part).drop_columns([S.EMBEDDING_F16, S.RUN_ID])
    assert rows.num_rows == 3 and rows.equals(pq.read_table(plain).drop_columns([S.RUN_ID]))
    capsys.readouterr()
    # Layout only: the same settings without the copy find the recording unchanged.
    assert main([*base, "--out", str(with_copy), "--no-float16-copy"]) == 0
    assert "1 unchanged (skipped)" in capsys.readouterr().out
    assert segments_parts(with_copy) == [part]
