"""Contract tests: the same behaviour whether SOURCE and OUT are on local disk or on S3."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pytest

from audify_batch.ingest.sources import discover
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.query import run_query_file, run_sql
from tests.conftest import write_noise
from tests.s3_server import S3_ENV, moto_s3


@dataclass(frozen=True)
class Storage:
    kind: str
    root: str  # a folder path or an s3:// URL

    def url(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def put(self, local: Path, *parts: str) -> str:
        target = self.url(*parts)
        fs, path = fsspec.core.url_to_fs(target)
        fs.makedirs(fs._parent(path), exist_ok=True)
        fs.put_file(str(local), path)
        return target

    def relative(self, uri: str) -> str:
        return uri.split(self.root, 1)[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def seaweed_env(seaweed_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed_endpoint)
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    fsspec.filesystem("s3").clear_instance_cache()


@pytest.fixture(params=["local", "s3-moto", "s3-seaweedfs"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Local disk, moto's S3 (fast) and SeaweedFS (a real S3 server)."""
    if request.param == "local":
        return Storage("local", str(tmp_path / "store"))
    request.getfixturevalue("s3_endpoint" if request.param == "s3-moto" else "seaweed_env")
    fsspec.filesystem("s3").clear_instance_cache()
    bucket = f"audify-{uuid.uuid4().hex[:8]}"
    fsspec.filesystem("s3").mkdir(bucket)
    return Storage("s3", f"s3://{bucket}")


@pytest.fixture
def archive(storage: Storage, tmp_path: Path) -> Storage:
    local = tmp_path / "local"
    local.mkdir()
    for name, seconds in [("a/one.flac", 7.0), ("a/b/two.wav", 12.0), ("three.ogg", 3.0)]:
        path = local / name.replace("/", "_")
        write_noise(path, seconds, seed=len(name))
        storage.put(path, "archive", name)
    bad = local / "bad.wav"
    bad.write_bytes(b"not audio")
    storage.put(bad, "archive", "bad.wav")
    (local / "notes.txt").write_text("not a recording")
    storage.put(local / "notes.txt", "archive", "notes.txt")
    return storage


def test_discovery_of_folder_glob_and_list(archive: Storage, tmp_path: Path) -> None:
    found = discover(archive.url("archive"))
    names = [archive.relative(ref.uri) for ref in found]
    assert names == ["/archive/a/b/two.wav", "/archive/a/one.flac", "/archive/bad.wav", "/archive/three.ogg"]
    assert all(ref.size_bytes > 0 and ref.mtime_s > 0 for ref in found)
    globbed = discover(archive.url("archive", "**", "*.flac"))
    assert [archive.relative(r.uri) for r in globbed] == ["/archive/a/one.flac"]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{archive.url('archive', 'three.ogg')}\n{archive.url('archive', 'missing.wav')}\n")
    listed = discover(str(listing))
    assert [r.error for r in listed] == ["no such file", None]


def test_label_rerun_and_query_behave_the_same(archive: Storage, tiny_model_dir: Path) -> None:
    config = LabelConfig.of(
        source=archive.url("archive"), out=archive.url("out"), model_dir=str(tiny_model_dir), workers=1
    )
    first = label_archive(config)
    assert (first.n_labeled, first.n_failed, first.n_segments) == (3, 1, 2 + 3 + 1)
    assert [archive.relative(uri) for uri, _ in first.failures] == ["/archive/bad.wav"]
    again = label_archive(config)
    assert (again.n_labeled, again.n_skipped, again.n_failed) == (0, 3, 1)
    rows = run_sql(
        archive.url("out"),
        "SELECT uri, segment_index, start_sample, end_sample, labels FROM segments ORDER BY ALL",
    ).rows
    assert [(archive.relative(r[0]), r[1], r[2], r[3]) for r in rows] == [
        ("/archive/a/b/two.wav", 0, 0, 80_000),
        ("/archive/a/b/two.wav", 1, 80_000, 160_000),
        ("/archive/a/b/two.wav", 2, 160_000, 192_000),
        ("/archive/a/one.flac", 0, 0, 80_000),
        ("/archive/a/one.flac", 1, 80_000, 112_000),
        ("/archive/three.ogg", 0, 0, 48_000),
    ]
    events = run_query_file(archive.url("out"), "events", {"uri": None})
    assert sum(events.column("n_segments")) == 6


def test_no_secret_reaches_the_output(archive: Storage, tiny_model_dir: Path) -> None:
    label_archive(
        LabelConfig.of(
            source=archive.url("archive"), out=archive.url("out"), model_dir=str(tiny_model_dir), workers=0
        )
    )
    fs, root = fsspec.core.url_to_fs(archive.url("out"))
    for path in fs.find(root):
        data = fs.cat_file(path)
        assert b"audify-test-secret" not in data and b"audify-test-key" not in data
