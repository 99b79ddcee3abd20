"""Shards, batches and the fan-out logic, without a Prefect server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audify_batch.run.batches import ShardResult, clean_output, failed_shards, run_shards, summarize_batch
from audify_batch.run.config import LabelConfig
from audify_batch.run.manifest import create_manifest
from audify_batch.run.pipeline import label_archive
from audify_batch.run.shards import Shard, all_shards, in_shard, shard_of
from audify_batch.store.query import run_sql
from tests.conftest import assert_same_segments, write_noise

RECORDINGS = "SELECT uri, size_bytes, mtime_s, status, n_segments, duration_s FROM recordings ORDER BY ALL"


@given(st.lists(st.text(min_size=1, max_size=40), unique=True, max_size=60), st.integers(1, 9))
def test_shards_cover_every_uri_exactly_once(uris: list[str], count: int) -> None:
    owners = {uri: [i for i in range(count) if in_shard(uri, i, count)] for uri in uris}
    assert all(len(found) == 1 and found[0] == shard_of(uri, count) for uri, found in owners.items())


def test_shard_is_validated() -> None:
    with pytest.raises(ValueError):
        Shard(3, 3)
    with pytest.raises(ValueError):
        LabelConfig.of(source="x", out="y", shard_index=2, shard_count=2)


def test_only_failed_shards_are_run_again() -> None:
    launched: list[tuple[int, list[int]]] = []

    def launch(pending: list[Shard], attempt: int) -> list[ShardResult]:
        launched.append((attempt, [s.index for s in pending]))
        return [ShardResult(s, attempt, ok=not (s.index == 1 and attempt == 1)) for s in pending]

    history = run_shards(all_shards(3), launch, max_attempts=3)
    assert launched == [(1, [0, 1, 2]), (2, [1])]
    assert failed_shards(history) == []

    def always_fails_2(pending: list[Shard], attempt: int) -> list[ShardResult]:
        return [ShardResult(s, attempt, ok=s.index != 2, detail="Crashed") for s in pending]

    assert failed_shards(run_shards(all_shards(3), always_fails_2, max_attempts=2)) == [Shard(2, 3)]


def test_shard_runs_from_one_manifest_equal_one_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(7):
        write_noise(archive / f"r{i}.wav", 3.0 + 2 * i, seed=i)
    (archive / "bad.wav").write_bytes(b"not audio")
    single, fanned = str(tmp_path / "single"), str(tmp_path / "fanned")
    base: dict[str, Any] = dict(source=str(archive), model_dir=str(tiny_model_dir), workers=0)
    label_archive(LabelConfig.of(out=single, **base))
    # A crashed shard leaves an uncommitted segments part; the parent cleans it afterwards.
    debris = Path(fanned) / "segments" / "model=tiny-fake-0.1" / "part-crashed-00000.parquet"
    debris.parent.mkdir(parents=True)
    debris.write_bytes(b"half a file")
    manifest = create_manifest(str(archive), fanned, "b1", 3)  # the parent lists once
    assert manifest.n_recordings == 8
    for index in range(3):
        shard: dict[str, Any] = dict(shard_index=index, shard_count=3, batch_id="b1", manifest=manifest.uri)
        label_archive(LabelConfig.of(out=fanned, **shard, **base))
    assert debris.exists()  # shards never clean: another shard may be writing
    assert clean_output(fanned, str(tiny_model_dir)) == 1
    assert_same_segments(fanned, single)
    assert run_sql(fanned, RECORDINGS).rows == run_sql(single, RECORDINGS).rows
    summary = summarize_batch(fanned, str(tiny_model_dir), "b1", wall_s=1.0)
    assert (summary.n_recordings, summary.n_labeled, summary.n_failed) == (8, 7, 1)
    assert summary.n_segments == run_sql(single, "SELECT count(*) FROM segments").rows[0][0]
    # Without a manifest a shard lists SOURCE itself and keeps its own URIs: the same recordings.
    again = label_archive(LabelConfig.of(out=fanned, shard_index=0, shard_count=3, batch_id="b2", **base))
    assert again.n_labeled == 0  # a re-run shard skips what is committed
    assert summarize_batch(fanned, str(tiny_model_dir), "b2", 1.0).n_skipped == again.n_skipped


def test_model_gate_wraps_every_model_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(3):
        write_noise(archive / f"r{i}.wav", 12.0, seed=i)
    entered: list[int] = []

    @contextmanager
    def gate() -> Iterator[None]:
        entered.append(1)
        yield

    config = LabelConfig.of(
        source=str(archive), out=str(tmp_path / "out"), model_dir=str(tiny_model_dir), workers=0, batch_size=2
    )
    summary = label_archive(config, model_gate=gate)
    assert len(entered) >= summary.n_segments // 2 > 0


def test_an_out_whose_only_segments_part_is_broken_debris_still_reads(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # A shard whose recordings all failed commits recordings rows and no segments part; a crashed
    # shard's half-written part is then the only segments file, and the views must not bind on it.
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "bad.wav").write_bytes(b"not audio")
    out = tmp_path / "out"
    base: dict[str, Any] = dict(source=str(archive), out=str(out), model_dir=str(tiny_model_dir), workers=0)
    label_archive(LabelConfig.of(**base))
    debris = out / "segments" / "model=tiny-fake-0.1" / "part-crashed-00000.parquet"
    debris.parent.mkdir(parents=True, exist_ok=True)
    debris.write_bytes(b"half a file")
    assert run_sql(str(out), "SELECT count(*) FROM segments").rows == ((0,),)
    assert run_sql(str(out), "SELECT status FROM recordings").rows == (("failed",),)
    write_noise(archive / "good.wav", 5.0, seed=1)
    assert label_archive(LabelConfig.of(**base)).n_labeled == 1  # the next run reads OUT too
    assert run_sql(str(out), "SELECT count(*) FROM segments").rows == ((1,),)
