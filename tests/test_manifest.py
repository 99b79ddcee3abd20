"""The fan-out manifest: SOURCE listed once, each shard labels exactly its slice and lists nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.parquet as pq
import pytest

from audify_batch.ingest import sources
from audify_batch.ingest.sources import RecordingRef, discover_all
from audify_batch.orchestration.tasks import count_recordings
from audify_batch.run import pipeline
from audify_batch.run.batches import LaunchShards, ShardResult
from audify_batch.run.config import LabelConfig
from audify_batch.run.manifest import create_manifest, manifest_uri, read_manifest_slice
from audify_batch.run.pipeline import label_archive
from audify_batch.run.shards import Shard, all_shards, in_shard
from audify_batch.store import schema as S
from audify_batch.store.query import run_sql
from tests.conftest import write_noise
from tests.s3_server import moto_bucket

OLD_S, NEW_S = 1_000_000.0, 2_000_000.0
OF_RUN = "SELECT uri FROM recording_history WHERE run_id = getvariable('run_id') ORDER BY uri"


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Nine short recordings (five of them modified at NEW_S, the others at OLD_S) and one broken file."""
    folder = tmp_path / "archive"
    folder.mkdir()
    for i in range(9):
        path = write_noise(folder / f"r{i}.wav", 2.0 + i % 3, seed=i)
        os.utime(path, (NEW_S if i % 2 == 0 else OLD_S,) * 2)
    (folder / "bad.wav").write_bytes(b"not audio")
    return folder


def count_listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every listing of a SOURCE from now on (discover_all goes through sources.discover)."""
    listed: list[str] = []
    real = sources.discover

    def counting(source: str, storage_options: dict[str, Any] | None = None) -> list[RecordingRef]:
        listed.append(source)
        return real(source, storage_options)

    monkeypatch.setattr(sources, "discover", counting)
    return listed


def forbid_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> list[RecordingRef]:
        raise AssertionError("a shard with a manifest listed the source")

    monkeypatch.setattr(sources, "discover", refuse)
    monkeypatch.setattr(pipeline, "discover_all", refuse)


def test_one_listing_split_into_disjoint_slices_that_cover_it(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "out")
    listing = discover_all(str(archive))
    listed = count_listings(monkeypatch)
    manifest = create_manifest(str(archive), out, "batch-1", 4)
    assert listed == [str(archive)]  # listed once, for every shard
    assert (manifest.uri, manifest.n_recordings, manifest.shard_count) == (
        manifest_uri(out, "batch-1"),
        len(listing),
        4,
    )
    assert manifest.uri == f"{out}/manifests/batch-1.parquet"
    assert os.listdir(tmp_path / "out" / "manifests") == ["batch-1.parquet"]  # no temporary file left
    assert pq.read_schema(manifest.uri).remove_metadata() == S.MANIFEST_SCHEMA
    slices = [read_manifest_slice(manifest.uri, shard, str(archive)) for shard in all_shards(4)]
    assert listed == [str(archive)]  # reading slices lists nothing
    for shard, refs in zip(all_shards(4), slices, strict=True):
        assert refs == [r for r in listing if in_shard(r.uri, shard.index, shard.count)]
    assert sorted(r.uri for refs in slices for r in refs) == [r.uri for r in listing]  # disjoint, complete
    ids = pq.read_table(manifest.uri, columns=[S.URI, S.RECORDING_ID]).to_pylist()
    assert all(row[S.RECORDING_ID] == RecordingRef(row[S.URI], 0, 0.0).recording_id for row in ids)


def test_a_listed_file_that_is_missing_keeps_its_error(archive: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"{archive / 'r0.wav'}\n{archive / 'gone.wav'}\n")
    manifest = create_manifest(str(listing), str(tmp_path / "out"), "b", 1)
    refs = read_manifest_slice(manifest.uri, Shard(0, 1), str(listing))
    assert [(Path(r.uri).name, r.error) for r in refs] == [("gone.wav", "no such file"), ("r0.wav", None)]
    assert refs == discover_all(str(listing))


def test_a_manifest_of_another_split_or_source_is_refused(archive: Path, tmp_path: Path) -> None:
    manifest = create_manifest(str(archive), str(tmp_path / "out"), "b", 2)
    with pytest.raises(ValueError, match="splits into 2 shards"):
        read_manifest_slice(manifest.uri, Shard(0, 3), str(archive))
    with pytest.raises(ValueError, match="not this run's source"):
        read_manifest_slice(manifest.uri, Shard(0, 2), str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError):
        read_manifest_slice(manifest_uri(str(tmp_path / "out"), "other"), Shard(0, 2))
    with pytest.raises(ValueError, match="batch_id"):
        manifest_uri(str(tmp_path / "out"), "../escape")


def test_a_shard_with_a_manifest_labels_exactly_its_slice_without_listing(
    archive: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "out")
    listing = discover_all(str(archive))
    manifest = create_manifest(str(archive), out, "b1", 2)
    forbid_listing(monkeypatch)
    base: dict[str, Any] = dict(source=str(archive), out=out, model_dir=str(tiny_model_dir), workers=0)
    with pytest.raises(AssertionError, match="listed the source"):
        pipeline.find_recordings(LabelConfig.of(**base))  # the guard holds: without a manifest it lists
    for shard in all_shards(2):
        shard_of_batch: dict[str, Any] = dict(
            shard_index=shard.index, shard_count=2, batch_id="b1", manifest=manifest.uri
        )
        config = LabelConfig.of(**shard_of_batch, **base)
        expected = [r.uri for r in read_manifest_slice(manifest.uri, shard, str(archive))]
        assert count_recordings.fn(config) == len(expected)  # the flow's count task lists nothing either
        summary = label_archive(config)
        rows = run_sql(out, OF_RUN, {"run_id": summary.run_id}).column("uri")
        assert rows == expected and summary.n_recordings == len(expected)
    labeled = run_sql(out, "SELECT uri, size_bytes, mtime_s FROM recordings ORDER BY uri").rows
    assert list(labeled) == [(r.uri, r.size_bytes, r.mtime_s) for r in listing]


def test_modified_time_filters_apply_to_the_slice(
    archive: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "out")
    manifest = create_manifest(str(archive), out, "b1", 2)
    forbid_listing(monkeypatch)
    shard = Shard(1, 2)
    config = LabelConfig.of(
        str(archive),
        out,
        model_dir=str(tiny_model_dir),
        workers=0,
        shard_index=shard.index,
        shard_count=shard.count,
        manifest=manifest.uri,
        modified_after_s=(OLD_S + NEW_S) / 2,
    )
    new_in_slice = [
        r.uri for r in read_manifest_slice(manifest.uri, shard, str(archive)) if r.mtime_s >= NEW_S
    ]
    assert new_in_slice  # the fixture puts new recordings in this shard
    assert [r.uri for r in pipeline.find_recordings(config)] == new_in_slice
    label_archive(config)
    assert run_sql(out, "SELECT uri FROM recordings ORDER BY uri").column("uri") == new_in_slice


@pytest.fixture
def s3_bucket() -> Iterator[str]:
    with moto_bucket() as bucket:
        yield f"{bucket}"


def test_manifest_on_object_storage(
    archive: Path, tiny_model_dir: Path, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = fsspec.filesystem("s3")
    for path in sorted(archive.iterdir()):
        fs.put_file(str(path), f"{s3_bucket}/archive/{path.name}")
    source, out = f"{s3_bucket}/archive", f"{s3_bucket}/out"
    manifest = create_manifest(source, out, "b1", 2)
    assert fs.ls(f"{s3_bucket}/out/manifests", detail=False) == [f"{s3_bucket[5:]}/out/manifests/b1.parquet"]
    slices = [read_manifest_slice(manifest.uri, shard, source) for shard in all_shards(2)]
    assert sorted(r.uri for refs in slices for r in refs) == [r.uri for r in discover_all(source)]
    forbid_listing(monkeypatch)
    config = LabelConfig.of(
        source,
        out,
        model_dir=str(tiny_model_dir),
        workers=0,
        shard_index=0,
        shard_count=2,
        manifest=manifest.uri,
    )
    summary = label_archive(config)
    assert summary.n_recordings == len(slices[0])
    assert run_sql(out, "SELECT uri FROM recordings ORDER BY uri").column("uri") == [r.uri for r in slices[0]]
    again = label_archive(config)  # the skip set comes from DuckDB reading OUT on S3
    assert (again.n_labeled, again.n_skipped) == (0, summary.n_labeled)


def test_fanout_flow_lists_once_and_hands_every_shard_the_manifest(
    prefect_harness: None,
    archive: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows import fanout
    from flows.label_archive import label_archive_flow

    out = str(tmp_path / "out")
    listed = count_listings(monkeypatch)
    given: list[dict[str, Any]] = []

    def in_process(deployment: str, parameters: Any, poll_s: float) -> LaunchShards:
        def launch(pending: list[Shard], attempt: int) -> list[ShardResult]:
            for shard in pending:
                given.append(parameters(shard))
                label_archive_flow(**given[-1])
            return [ShardResult(shard, attempt, True, "Completed") for shard in pending]

        return launch

    monkeypatch.setattr(fanout, "deployment_launcher", in_process)
    result = fanout.fanout_flow(str(archive), out, shards=3, model_dir=str(tiny_model_dir), workers=0)
    assert listed == [str(archive)]  # the parent's one listing; no shard listed SOURCE
    assert [p["shard_index"] for p in given] == [0, 1, 2]
    assert {p["manifest"] for p in given} == {manifest_uri(out, result["run_id"])}
    assert (result["n_recordings"], result["n_labeled"], result["n_failed"]) == (10, 9, 1)
