"""End to end on real services: Prefect server, a process work pool, two workers, `prefect deploy`
from the repository's prefect.yaml, and a fan-out run over an archive in SeaweedFS.

The fan-out's output must equal a single-process run over the same archive, row for row.
Everything started here is stopped here, also when the test fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import fsspec
import pytest

from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.query import run_sql
from tests.conftest import assert_same_segments, write_noise
from tests.services import BIN, background, prefect_server, wait_until

REPO = Path(__file__).resolve().parents[1]
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "audify-it-key",
    "AWS_SECRET_ACCESS_KEY": "audify-it-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
ROWS = (
    "SELECT uri, segment_index, start_sample, end_sample, labels, confidences, embedding "
    "FROM segments ORDER BY ALL"
)
RECORDINGS = "SELECT uri, status, error, n_segments, fingerprint FROM recordings ORDER BY ALL"

pytestmark = pytest.mark.slow


@pytest.fixture
def services(seaweed_endpoint: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A Prefect server (SeaweedFS is the session's); yields the environment every Prefect process gets."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_"))}
    base.update(S3_CREDENTIALS, DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    with prefect_server(tmp_path / "prefect-server", base) as api:
        yield {
            **base,
            "AWS_ENDPOINT_URL": seaweed_endpoint,
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(tmp_path / "prefect-client"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        }


def prefect(env: dict[str, str], *args: str, timeout_s: float = 300) -> str:
    done = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        env=env,
        cwd=REPO,
        text=True,
        capture_output=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise AssertionError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def make_archive(bucket: str, tmp_path: Path) -> None:
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(bucket)
    for i in range(6):
        local = write_noise(tmp_path / f"r{i}.flac", 4.0 + 3 * i, seed=i, sample_rate_hz=44_100)
        fs.put_file(str(local), f"{bucket}/archive/site-{i % 2}/r{i}.flac")
    fs.pipe(f"{bucket}/archive/site-0/broken.wav", b"RIFF but not really audio")


def test_fanout_on_workers_equals_a_single_process_run(
    services: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [*S3_CREDENTIALS, "AWS_ENDPOINT_URL"]:
        monkeypatch.setenv(key, services[key])
    bucket = f"audify-it-{uuid.uuid4().hex[:8]}"
    make_archive(bucket, tmp_path)
    source, fanned, single = f"s3://{bucket}/archive", f"s3://{bucket}/fanned", f"s3://{bucket}/single"
    env = {**services, "AUDIFY_SOURCE": source, "AUDIFY_OUT": fanned}
    prefect(env, "work-pool", "create", "audify-cpu", "--type", "process")
    prefect(env, "work-pool", "create", "audify-gpu", "--type", "process")
    prefect(env, "deploy", "--all")
    deployments = prefect(env, "deployment", "ls")
    for name in ["label-scheduled", "label-shard", "label-fanout", "label-backfill"]:
        assert name in deployments
    bad = 'request={"out": "s3://x", "prefix": "s3://y", "top_k": "many"}'
    run_bad = [str(BIN / "prefect"), "--no-prompt", "deployment", "run", "label-backfill/label-backfill"]
    refused = subprocess.run(
        [*run_bad, "--param", bad], env=env, cwd=REPO, text=True, capture_output=True, timeout=120
    )
    assert refused.returncode != 0 and "top_k" in refused.stdout + refused.stderr  # refused at creation
    with ExitStack() as workers:
        for name in ["worker-a", "worker-b"]:
            cmd = [str(BIN / "prefect"), "worker", "start", "--pool", "audify-cpu", "--name", name]
            log = tmp_path / f"{name}.log"
            proc = workers.enter_context(background([*cmd, "--limit", "2"], env, log, cwd=REPO))
            wait_until(lambda log=log: "started" in _log(log).lower(), 120, name, proc)
        prefect(
            env,
            "deployment",
            "run",
            "label-fanout/label-fanout",
            "--param",
            "shards=3",
            "--param",
            "workers=1",
            "--param",
            "poll_s=1",
            "--watch",
            "--watch-timeout",
            "540",
            timeout_s=600,
        )
        logs = "".join(_log(tmp_path / f"{n}.log") for n in ["worker-a", "worker-b"])
    label_archive(LabelConfig.of(source=source, out=single, workers=1))
    assert len(run_sql(fanned, ROWS).rows) == len(run_sql(single, ROWS).rows) > 6
    assert_same_segments(fanned, single)
    assert run_sql(fanned, RECORDINGS).rows == run_sql(single, RECORDINGS).rows
    assert run_sql(fanned, "SELECT count(*) FROM runs").rows[0][0] == 3  # one run row per shard
    # The parent and its three shards all ran on the pool's workers and completed.
    # Shards end Completed (or CompletedWithFailures) with their counts as the state message.
    done = r"Flow run '([^']+)' - Finished in state Completed(?:WithFailures)?\("
    finished = re.findall(done, logs)
    assert len(finished) == 4
    assert {f"shard-{i}-of-3-try-1" for i in (1, 2, 3)} <= set(finished)


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
