"""One writer per OUT: the lease, the second run that finds OUT busy, and nothing committed ever lost."""

from __future__ import annotations

import os
import posixpath
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fsspec.core import url_to_fs

from audify_batch.cli.main import main
from audify_batch.model.checkpoint import read_card
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store import schema as S
from audify_batch.store import sink as sink_module
from audify_batch.store.lease import (
    HOST,
    Holder,
    Lease,
    LeaseTiming,
    OutputBusyError,
    acquire,
    hold_lease,
    lease_store,
    read_lease,
)
from audify_batch.store.lease_store import LeaseStore, S3LeaseStore
from audify_batch.store.query import run_sql
from audify_batch.store.sink import ParquetSink
from tests.conftest import write_noise
from tests.s3_server import moto_bucket

TIMING = LeaseTiming(heartbeat_s=0.05, expiry_s=30.0, poll_s=0.05)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two archives of four recordings each (runs A and B label different sources)."""
    found = {}
    for name in ("a", "b"):
        folder = tmp_path_factory.mktemp(f"source-{name}")
        for i in range(4):
            write_noise(folder / f"{name}{i}.wav", 4.0 + i, seed=ord(name) + i)
        found[name] = folder
    return found


@pytest.fixture(params=["local", "s3"])
def out(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "local":
        yield str(tmp_path / "out")
    else:
        yield request.getfixturevalue("s3_out")


def config(source: Path, out: str, model_dir: Path, **settings: Any) -> LabelConfig:
    return LabelConfig.of(str(source), out, model_dir=str(model_dir), workers=0, **settings)


def labeled_rows_without_their_segments(out: str) -> list[tuple[str, str, int, int]]:
    """Every committed labeled row whose segments part lacks some of its n_segments rows."""
    fs, root = url_to_fs(out)
    fs.invalidate_cache()
    missing = []
    for path in fs.glob(posixpath.join(root, S.RECORDINGS, "model=*", "part-*.parquet")):
        with fs.open(path, "rb") as handle:
            rows = pq.read_table(handle).to_pylist()
        segments_path = path.replace(f"/{S.RECORDINGS}/", f"/{S.SEGMENTS}/")
        found: Counter[str] = Counter()
        if fs.exists(segments_path):
            with fs.open(segments_path, "rb") as handle:
                found = Counter(pq.read_table(handle, columns=[S.URI]).column(S.URI).to_pylist())
        for row in rows:
            if row[S.STATUS] == S.STATUS_LABELED and found[row[S.URI]] < row[S.N_SEGMENTS]:
                missing.append((posixpath.basename(path), row[S.URI], row[S.N_SEGMENTS], found[row[S.URI]]))
    return missing


def test_store_changes_are_conditional(out: str) -> None:
    fs, root = url_to_fs(out)
    assert_conditional(lease_store(fs, root))


@pytest.fixture
def s3_out() -> Iterator[str]:
    with moto_bucket() as bucket:
        yield f"{bucket}/out"


def test_a_store_without_conditional_writes_still_refuses_stale_changes(s3_out: str) -> None:
    out = s3_out
    fs, root = url_to_fs(out)
    store = lease_store(fs, root)
    assert isinstance(store, S3LeaseStore)
    store.conditional = False  # what a store that rejects IfNoneMatch/IfMatch leaves us with
    assert_conditional(store)
    with hold_lease(out, "first", timing=TIMING), pytest.raises(OutputBusyError):
        acquire(store, out, "second", None, 0.0, TIMING)


def assert_conditional(store: LeaseStore) -> None:
    assert store.read() is None
    assert store.create("first") and not store.create("second")
    token = store.read().token  # type: ignore[union-attr]
    assert store.replace("changed", token) and not store.replace("stale", token)
    assert store.read().text == "changed"  # type: ignore[union-attr]
    assert not store.delete(token)
    assert store.delete(store.read().token) and store.read() is None  # type: ignore[union-attr]


@pytest.mark.parametrize("slow", ["a", "b"])  # A first (slow), B second; and the other way round
def test_a_second_run_on_a_busy_out_fails_and_nothing_committed_is_lost(
    sources: dict[str, Path], tiny_model_dir: Path, out: str, slow: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = "b" if slow == "a" else "a"
    mid_commit, second_done = threading.Event(), threading.Event()
    write = sink_module.write_parquet_atomic

    def slow_write(fs: Any, table: Any, path: str, **options: Any) -> None:
        """In the slow run: its first recordings part (the commit) waits until the second run ended."""
        if threading.current_thread().name == "slow-run" and f"/{S.RECORDINGS}/" in path:
            mid_commit.set()
            second_done.wait(60)
        write(fs, table, path, **options)

    monkeypatch.setattr(sink_module, "write_parquet_atomic", slow_write)
    errors: list[BaseException] = []

    def run_slow() -> None:
        try:
            label_archive(config(sources[slow], out, tiny_model_dir, commit_every_segments=1))
        except BaseException as error:  # handed to the test thread
            errors.append(error)

    first = threading.Thread(target=run_slow, name="slow-run")
    first.start()
    try:
        assert mid_commit.wait(120), "the slow run never reached its commit"
        with pytest.raises(OutputBusyError, match=r"in use by \S+ \(host .*, pid \d+\): last heartbeat"):
            label_archive(config(sources[fast], out, tiny_model_dir))
    finally:
        second_done.set()
        first.join(120)
    assert errors == []
    assert labeled_rows_without_their_segments(out) == []
    after = label_archive(config(sources[fast], out, tiny_model_dir))  # OUT is free again
    assert after.n_labeled == 4
    assert labeled_rows_without_their_segments(out) == []
    counts = run_sql(out, "SELECT count(*), sum(n_segments) FROM recordings WHERE status = 'labeled'").rows
    assert counts == run_sql(out, "SELECT count(DISTINCT uri), count(*) FROM segments").rows
    assert read_lease(out) is None  # released at the end of each run


def test_the_cli_prints_the_busy_error_and_exits_1(
    sources: dict[str, Path], tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    with hold_lease(out, "other-run", timing=TIMING):
        argv = ["label", str(sources["a"]), "--out", out, "--model", str(tiny_model_dir), "--workers", "0"]
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("audify: error: ") and "in use by other-run" in err and "--wait-s" in err


def test_a_waiting_run_gets_the_lease_once_it_is_released(out: str) -> None:
    first = hold_lease(out, "first", timing=TIMING)
    first.__enter__()
    releaser = threading.Timer(0.2, first.__exit__, (None, None, None))
    releaser.start()
    with hold_lease(out, "second", wait_s=120, timing=TIMING) as held:
        assert held.fresh
        assert read_lease(out).owner == "second"  # type: ignore[union-attr]
    releaser.join()


def expired_lease(owner: str, host: str = "another-host", pid: int = 4242) -> Lease:
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    lease = Lease.new(owner, Holder(owner, host, pid), long_ago, LeaseTiming(10.0, 60.0))
    return replace(lease, host=host)


def put_lease(out: str, lease: Lease) -> None:
    fs, root = url_to_fs(out)
    assert lease_store(fs, root).create(lease.to_json())


def test_a_live_lease_of_another_host_is_busy_and_an_expired_one_is_taken_over(out: str) -> None:
    live = Lease.new("elsewhere", Holder("elsewhere", "another-host", 4242), datetime.now(UTC), TIMING)
    put_lease(out, live)
    busy = pytest.raises(OutputBusyError, match=r"in use by elsewhere \(host another-host, pid 4242\)")
    with busy, hold_lease(out, "mine", timing=TIMING):
        pass
    fs, root = url_to_fs(out)
    lease_store(fs, root).delete(lease_store(fs, root).read().token)  # type: ignore[union-attr]
    put_lease(out, expired_lease("stalled"))
    with hold_lease(out, "mine", timing=TIMING) as held:
        assert held.fresh and read_lease(out).owner == "mine"  # type: ignore[union-attr]
    assert read_lease(out) is None


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    out = str(tmp_path / "out")
    live = Lease.new("killed", Holder("killed", HOST, pid), datetime.now(UTC), TIMING)
    put_lease(out, live)
    with hold_lease(out, "mine", timing=TIMING) as held:
        assert held.fresh


def test_runs_of_one_batch_share_its_lease_and_the_last_one_out_removes_it(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    with hold_lease(out, "batch-1", batch_id="batch-1", timing=TIMING) as parent:
        assert parent.fresh
        with hold_lease(out, "shard-0", batch_id="batch-1", timing=TIMING) as shard:
            assert not shard.fresh
            assert parent.live_ids() == {"batch-1", "shard-0"}
            busy = pytest.raises(OutputBusyError, match="batch-1 and 1 more runs")
            with busy, hold_lease(out, "stranger", batch_id="batch-2", timing=TIMING):
                pass
        assert parent.live_ids() == {"batch-1"}
    assert read_lease(out) is None


def test_the_next_run_marks_a_killed_run_interrupted(
    sources: dict[str, Path], tiny_model_dir: Path, out: str
) -> None:
    card = read_card(tiny_model_dir)
    killed = ParquetSink(out, card.name, card.version, "20240101T000000Z-killed")
    killed.write_run(
        {
            S.RUN_ID: killed.run_id,
            S.STARTED_AT: datetime.now(UTC) - timedelta(hours=2),
            S.FINISHED_AT: None,
            S.RUN_STATUS: S.RUN_RUNNING,
            S.CONFIG_JSON: "{}",
            S.CONFIG_HASH: "h",
            S.MODEL_NAME: card.name,
            S.MODEL_VERSION: card.version,
            **dict.fromkeys([S.N_RECORDINGS, S.N_LABELED, S.N_FAILED, S.N_SKIPPED, S.N_SEGMENTS], 0),
            S.AUDIO_S: 0.0,
            S.WALL_S: None,
        }
    )
    put_lease(out, expired_lease(killed.run_id))
    summary = label_archive(config(sources["a"], out, tiny_model_dir))
    statuses = dict(run_sql(out, "SELECT run_id, status FROM runs").rows)
    assert statuses == {killed.run_id: S.RUN_INTERRUPTED, summary.run_id: S.RUN_COMPLETED}


def test_a_recording_whose_segments_part_is_missing_is_labeled_again(
    sources: dict[str, Path], tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    first = label_archive(config(sources["a"], out, tiny_model_dir, commit_every_segments=1))
    segments_dir = next((Path(out) / S.SEGMENTS).glob("model=*"))
    lost = sorted(segments_dir.glob("part-*.parquet"))[0]
    lost_uris = set(pq.read_table(lost, columns=[S.URI]).column(S.URI).to_pylist())
    lost.unlink()  # what a concurrent clean-up did before runs took the lease
    assert labeled_rows_without_their_segments(out)
    again = label_archive(config(sources["a"], out, tiny_model_dir))
    assert (again.n_labeled, again.n_skipped) == (len(lost_uris), first.n_labeled - len(lost_uris))
    rows = run_sql(out, "SELECT count(*), sum(n_segments) FROM recordings WHERE status = 'labeled'").rows
    assert rows == ((4, first.n_segments),)
    assert run_sql(out, "SELECT count(*) FROM segments").rows == ((first.n_segments,),)


def test_lease_timing_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIFY_LEASE_EXPIRY_S", "3")
    monkeypatch.setenv("AUDIFY_LEASE_HEARTBEAT_S", "10")
    timing = LeaseTiming.from_env()
    assert timing.expiry_s == 3.0 and timing.heartbeat_s == 1.0
    with pytest.raises(ValueError):
        LeaseTiming(heartbeat_s=5.0, expiry_s=5.0)
    assert os.environ["AUDIFY_LEASE_EXPIRY_S"] == "3"
