"""Transient S3 faults are retried with backoff; an object that keeps failing becomes a failed row.

botocore's and s3fs's own per-request retries are switched off here, so what
absorbs the faults is the pipeline's whole-recording retry (and a fault in the
middle of a stream, which per-request retries cannot see, is covered too).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
import s3fs

import audify_batch.ingest.loader as loader
from audify_batch.ingest.retry import RetryPolicy, is_transient
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.query import run_sql
from tests.conftest import write_noise
from tests.fault_proxy import fault_proxy
from tests.s3_server import moto_s3

NO_BOTO_RETRIES = {"config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}}}
BLOCK_BYTES = 64 * 1024
SQL = (
    "SELECT regexp_extract(uri, '[^/]+$') AS name, segment_index, labels, confidences "
    "FROM segments ORDER BY ALL"
)


@pytest.fixture(scope="module")
def bucket() -> Iterator[tuple[str, str]]:
    with moto_s3() as endpoint:
        name = f"faults-{uuid.uuid4().hex[:8]}"
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir(name)
        yield endpoint, name


def _upload(tmp_path: Path, bucket: str) -> dict[str, int]:
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    sizes = {}
    for i, name in enumerate(["steady.wav", "throttled.wav", "dropped.wav", "broken.wav"]):
        local = write_noise(tmp_path / name, 21.0, seed=i)
        fs.put_file(str(local), f"{bucket}/archive/{name}")
        sizes[name] = local.stat().st_size
    return sizes


def _plan(method: str, key: str, n: int) -> str | None:
    if method != "GET" or not key.endswith(".wav"):
        return None
    if key.endswith("throttled.wav") and n in (1, 4):
        return "503"
    if key.endswith("dropped.wav") and n == 3:
        return "reset"
    if key.endswith("dropped.wav") and n == 6:
        return "truncate"
    if key.endswith("broken.wav"):
        return "500"
    return None


def test_faults_are_retried_and_a_hopeless_object_fails(
    bucket: tuple[str, str], tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, name = bucket
    sizes = _upload(tmp_path, name)
    monkeypatch.setattr(loader, "READ_BLOCK_BYTES", BLOCK_BYTES)  # many range reads per object
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)  # s3fs's own retries: a class attribute
    monkeypatch.setattr(s3fs.core.S3File, "retries", 1)

    def config(out: Path, endpoint_url: str) -> LabelConfig:
        return LabelConfig.of(
            source=f"s3://{name}/archive",
            out=str(out),
            model_dir=str(tiny_model_dir),
            workers=0,
            read_attempts=3,
            retry_delay_s=0.01,
            storage_options={**NO_BOTO_RETRIES, "endpoint_url": endpoint_url},
        )

    clean = label_archive(config(tmp_path / "clean", endpoint))
    assert clean.n_failed == 0
    with fault_proxy(endpoint, _plan) as (proxy_url, proxy):
        summary = label_archive(config(tmp_path / "faulty", proxy_url))
    assert (summary.n_labeled, summary.n_failed) == (3, 1)
    [(uri, reason)] = summary.failures
    assert uri.endswith("broken.wav") and reason.endswith("after 3 attempts")
    assert {fault for *_, fault in proxy.faults} == {"503", "reset", "truncate", "500"}
    assert proxy.requests[("GET", f"/{name}/archive/broken.wav")] >= 3
    # Everything that was not hopeless is labeled exactly as without faults.
    faulty_rows = list(run_sql(str(tmp_path / "faulty"), SQL).rows)
    assert faulty_rows == [r for r in run_sql(str(tmp_path / "clean"), SQL).rows if r[0] != "broken.wav"]
    # Read once, streamed: the untouched object went over the wire once, plus the two 64 KiB
    # fingerprint reads, and in range requests no larger than the read-ahead block.
    steady = f"/{name}/archive/steady.wav"
    assert proxy.bytes_sent[steady] <= sizes["steady.wav"] + 2 * 64 * 1024
    assert proxy.requests[("GET", steady)] >= sizes["steady.wav"] // BLOCK_BYTES


def test_which_errors_are_transient() -> None:
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert is_transient(OSError(5, "Input/output error"))
    assert not is_transient(FileNotFoundError()) and not is_transient(PermissionError())

    class ClientPayloadError(Exception):
        pass

    assert is_transient(ClientPayloadError("Response payload is not completed"))
    assert not is_transient(ValueError("a bug, not a fault"))


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(attempts=6, first_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0)]:
        delays = [policy.delay_s(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
