"""Ctrl-C and a full disk: commit what is complete, one line, a documented status, resume later."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from audify_batch.cli.main import main
from audify_batch.ingest.loader import quiet_hangups
from audify_batch.model.inference import TorchModel
from audify_batch.records import RunInterrupted
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.query import run_sql
from audify_batch.store.sink import ParquetSink
from tests.conftest import write_noise

AUDIFY = Path(sys.executable).with_name("audify")


def _archive(folder: Path, n: int, seconds: float = 3.0) -> Path:
    folder.mkdir()
    for i in range(n):
        write_noise(folder / f"r{i:03d}.wav", seconds, seed=i)
    return folder


def _interrupt_on_call(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """The model raises KeyboardInterrupt (as Ctrl-C would) on its ``call``-th batch."""
    calls = {"n": 0}
    real = TorchModel.predict

    def predict(self: TorchModel, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TorchModel, "predict", predict)


def test_ctrl_c_commits_complete_recordings_and_marks_the_run(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, out = _archive(tmp_path / "archive", 12), str(tmp_path / "out")
    config = LabelConfig.of(
        source=str(archive), out=out, model_dir=str(tiny_model_dir), workers=0, batch_size=4
    )
    _interrupt_on_call(monkeypatch, 3)
    with pytest.raises(RunInterrupted) as stopped:
        label_archive(config)
    summary = stopped.value.summary
    committed = run_sql(out, "SELECT count(*) FROM recordings WHERE status = 'labeled'").rows[0][0]
    segments = run_sql(out, "SELECT count(*), count(DISTINCT uri) FROM segments").rows[0]
    # Two batches of four segments were scored; every recording they finished is committed.
    assert 0 < committed < 12 and summary.n_labeled == committed
    assert segments == (summary.n_segments, committed)
    runs = run_sql(out, "SELECT status, n_labeled, n_segments FROM runs").rows
    assert runs == (("interrupted", committed, summary.n_segments),)

    monkeypatch.undo()
    resumed = label_archive(config)
    assert (resumed.n_skipped, resumed.n_labeled) == (committed, 12 - committed)
    rows = run_sql(out, "SELECT count(*), count(DISTINCT uri) FROM segments").rows[0]
    assert rows == (12, 12)


def test_ctrl_c_in_a_terminal_prints_one_line_and_exits_130(tiny_model_dir: Path, tmp_path: Path) -> None:
    """SIGINT to the whole process group, as a terminal sends it: workers included.

    Sent once the run is under way (its run row written, its worker processes started):
    thousands of overlapping segments keep it busy for many seconds.
    """
    archive, out = _archive(tmp_path / "archive", 8, seconds=60.0), tmp_path / "out"
    cmd = [str(AUDIFY), "label", str(archive), "--out", str(out), "--model", str(tiny_model_dir)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "1", "--hop-s", "0.1", "--batch-size", "8", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("runs/*/run-*.parquet")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audify: interrupted:") and "resume" in lines[0]
    status = run_sql(str(out), "SELECT status FROM runs").rows
    assert status == (("interrupted",),)


def test_disk_full_is_one_line_and_the_next_run_resumes(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive, out = _archive(tmp_path / "archive", 6), tmp_path / "out"
    argv = ["label", str(archive), "--out", str(out), "--model", str(tiny_model_dir)]
    argv += ["--workers", "0", "--no-progress"]
    real = ParquetSink.write_part

    def full(self: ParquetSink, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "segments"))

    monkeypatch.setattr(ParquetSink, "write_part", full)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"audify: error: No space left on device: {out / 'segments'}"]
    assert run_sql(str(out), "SELECT count(*) FROM segments").rows == ((0,),)  # queries still work

    monkeypatch.setattr(ParquetSink, "write_part", real)
    assert main(argv) == 0
    assert run_sql(str(out), "SELECT count(DISTINCT uri) FROM segments").rows == ((6,),)


def test_a_worker_says_nothing_when_the_run_hangs_up_mid_handover(capsys: pytest.CaptureFixture[str]) -> None:
    """The hook ``init_worker`` installs: a closed connection (Ctrl-C in the run while a worker's
    resource_sharer thread hands over a chunk) prints nothing; any other error prints as usual."""
    for hangup in (EOFError(), BrokenPipeError(), ConnectionResetError()):
        quiet_hangups(type(hangup), hangup, None)
    assert capsys.readouterr().err == ""
    quiet_hangups(ValueError, ValueError("a real bug"), None)
    assert "ValueError: a real bug" in capsys.readouterr().err
