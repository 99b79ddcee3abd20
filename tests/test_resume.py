"""kill -9 at any point, then rerun: the same rows as an uninterrupted run, none twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.query import run_sql
from tests.conftest import write_noise

RUNNER = """
import json, sys
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
label_archive(LabelConfig.of(**json.loads(sys.argv[1])))
"""
ROWS = "SELECT uri, segment_index, start_sample, end_sample, labels FROM segments ORDER BY ALL"


def all_segment_rows(out: Path) -> int:
    """Every segments row in committed parts, current or not (duplicates would show here)."""
    return run_sql(str(out), "SELECT count(*) FROM segments").rows[0][0]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("resume-archive")
    for i in range(24):
        write_noise(folder / f"rec{i:02d}.wav", 11.0 + i % 4, seed=i)
    return folder


@pytest.fixture(scope="module")
def reference(archive: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "out"
    label_archive(LabelConfig.of(source=str(archive), out=str(out), model_dir=str(tiny_model_dir), workers=1))
    return out


def committed_recordings(out: Path) -> int:
    parts = list((out / "recordings").glob("model=*/part-*.parquet"))
    return sum(pq.read_metadata(part).num_rows for part in parts)


@pytest.mark.parametrize("kill_after", [0, 1, 5, 12])
def test_kill_9_then_resume_matches_uninterrupted_run(
    archive: Path, tiny_model_dir: Path, reference: Path, tmp_path: Path, kill_after: int
) -> None:
    out = tmp_path / "out"
    config = {
        "source": str(archive),
        "out": str(out),
        "model_dir": str(tiny_model_dir),
        "workers": 1,
        "commit_every_segments": 1,
        "batch_size": 4,
    }
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(config)], env=env)
    deadline = time.monotonic() + 120
    while committed_recordings(out) < kill_after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = committed_recordings(out)
    assert interrupted_at < 24, "the run finished before it could be killed"
    summary = label_archive(LabelConfig.of(**{**config, "commit_every_segments": 20_000}))
    assert summary.n_skipped == interrupted_at and summary.n_labeled == 24 - interrupted_at
    assert run_sql(str(out), ROWS).rows == run_sql(str(reference), ROWS).rows
    assert all_segment_rows(out) == all_segment_rows(reference)
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_workers_end_when_the_run_is_killed(
    archive: Path, tiny_model_dir: Path, tmp_path: Path, start_method: str
) -> None:
    config = {
        "source": str(archive),
        "out": str(tmp_path / "out"),
        "model_dir": str(tiny_model_dir),
        "workers": 2,
        "batch_size": 1,
        "worker_start": start_method,
        "commit_every_segments": 1,
    }
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(config)], env=env)
    run = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while committed_recordings(tmp_path / "out") < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    workers = run.children(recursive=True)
    assert workers, "the run had no worker processes"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=10)
    for leftover in alive:
        leftover.kill()
    assert alive == [], f"{len(alive)} worker processes outlived the killed run"


def test_debris_of_a_killed_writer_is_removed(
    archive: Path, tiny_model_dir: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = LabelConfig.of(source=str(archive), out=str(out), model_dir=str(tiny_model_dir), workers=0)
    label_archive(config)
    # A writer killed between the segments file and its commit record, and mid-write:
    segments_dir = next((out / "segments").glob("model=*"))
    part = next(segments_dir.glob("part-*.parquet"))
    (segments_dir / "part-killed-00000.parquet").write_bytes(part.read_bytes())
    (segments_dir / "part-killed-00001.parquet.abc.tmp").write_bytes(b"PAR1 partial")
    rerun = label_archive(config)
    assert rerun.n_labeled == 0 and rerun.n_skipped == 24
    assert not (segments_dir / "part-killed-00000.parquet").exists()
    assert not list(segments_dir.glob("*.tmp"))
    assert run_sql(str(out), ROWS).rows == run_sql(str(reference), ROWS).rows
