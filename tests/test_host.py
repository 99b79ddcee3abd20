"""What a run asks of its host: fork only while every other thread is held still, and keep freed
activation memory for the next batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from audify_batch.run.host import worker_start_method
from audify_batch.store.lease import LeaseTiming, hold_lease, read_lease
from tests.conftest import write_noise

TIMING = LeaseTiming(heartbeat_s=0.02, expiry_s=30.0, poll_s=0.05)


def test_workers_fork_only_when_every_other_thread_is_held_still() -> None:
    stop = threading.Event()
    extra = threading.Thread(target=stop.wait, daemon=True)
    extra.start()
    try:
        others = [t for t in threading.enumerate() if t is not threading.current_thread() and t is not extra]
        assert worker_start_method(quiet=others) == "forkserver"  # ``extra`` runs freely
        assert worker_start_method(quiet=[*others, extra]) == "fork"
    finally:
        stop.set()
        extra.join()


def _lease_text(out: Path) -> str:
    lease = read_lease(str(out))
    assert lease is not None
    return lease.to_json()


def test_a_quiesced_lease_does_not_beat_until_released(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with hold_lease(str(out), "run", timing=TIMING) as held:
        with held.quiesced():
            before = _lease_text(out)
            time.sleep(0.3)  # fifteen heartbeat intervals
            assert _lease_text(out) == before
        deadline = time.monotonic() + 10
        while _lease_text(out) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _lease_text(out) != before  # beating again
        held.check()


RUN = """
import json, sys
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.query import run_sql
config = LabelConfig.of(sys.argv[1], sys.argv[2], model_dir=sys.argv[3], workers=1)
summary = label_archive(config)
row = run_sql(sys.argv[2], "SELECT config_json FROM runs WHERE status = 'completed'").rows[0]
print(json.dumps(json.loads(row[0])["used"]))
"""


def test_a_local_run_forks_its_workers_beside_its_lease_heartbeat(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for i in range(2):
        write_noise(source / f"r{i}.wav", 6.0, seed=i)
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(source), str(tmp_path / "out"), str(tiny_model_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    used = json.loads(done.stdout.strip().splitlines()[-1])
    assert used["workers"] == 1 and used["worker_start"] == "fork" and used["freed_memory_kept"] is True


CHILD = """
import resource, sys
import numpy as np
from audify_batch.model.cpu_memory import keep_freed_memory
kept = sys.argv[1] == "kept" and keep_freed_memory()
np.ones(1 << 24, np.float32).sum()  # 64 MiB, freed again
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(1 << 24, np.float32).sum()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    kept, faults = done.stdout.split()
    return kept == "True", int(faults)


def test_kept_memory_serves_the_next_batch_without_faulting_its_pages_in_again() -> None:
    kept, kept_faults = _faults("kept")
    plain_kept, plain_faults = _faults("plain")
    assert kept and not plain_kept  # glibc (Linux) took the setting
    # 64 MiB in fresh pages: 16,384 faults of 4 KiB (fewer with huge pages); reused: almost none.
    assert kept_faults < 100 and kept_faults * 4 < plain_faults


WORKER = """
import ctypes, sys
import torch
from torch.utils.data import DataLoader, IterableDataset
from audify_batch.ingest.loader import init_worker
from audify_batch.model.cpu_memory import keep_freed_memory
from audify_batch.run.host import start_worker

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"

class MallInfo2(ctypes.Structure):  # glibc >= 2.33
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS.split()]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = MallInfo2

class Mapped(IterableDataset):
    def __iter__(self):  # is a 64 MiB block its own mapping, returned to the system when freed?
        block = libc.malloc(1 << 26)
        mapped = libc.mallinfo2().hblkhd >= 1 << 26
        libc.free(block)
        yield torch.tensor(mapped)

assert keep_freed_memory()
setup = {"run": start_worker, "plain": init_worker}[sys.argv[1]]
loader = DataLoader(
    Mapped(), batch_size=None, num_workers=1, worker_init_fn=setup, multiprocessing_context="fork"
)
print(bool(next(iter(loader))))
"""


def _worker_maps_large_blocks(setup: str) -> bool:
    done = subprocess.run([sys.executable, "-c", WORKER, setup], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1] == "True"


def test_decode_workers_forked_from_a_run_go_back_to_mallocs_defaults() -> None:
    # A worker forked from the model's process inherits its malloc settings: it would keep its
    # freed memory on the heap and hold its peak. A run's workers map large blocks and return them.
    assert not _worker_maps_large_blocks("plain")
    assert _worker_maps_large_blocks("run")


START = """
import sys, threading
from torch.utils.data import DataLoader, IterableDataset
from audify_batch.run.host import start_workers
from audify_batch.store.lease import hold_lease

class One(IterableDataset):
    def __iter__(self):
        yield 1

if __name__ == "__main__":
    with hold_lease(sys.argv[1], "run") as lease:
        loader = DataLoader(One(), batch_size=None, num_workers=1, multiprocessing_context="fork")
        if sys.argv[2] == "busy":  # a thread started after the loader was made, as a library might
            threading.Thread(target=threading.Event().wait, daemon=True).start()
        chunks, start = start_workers(loader, lease, None)
        print(start, list(chunks))
"""


def _started(tmp_path: Path, threads: str) -> str:
    script = tmp_path / "start.py"  # a file: a fork server's workers import the dataset's class from it
    script.write_text(START)
    command = [sys.executable, str(script), str(tmp_path / threads), threads]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_how_workers_start_is_decided_just_before_they_start(tmp_path: Path) -> None:
    assert _started(tmp_path, "quiet") == "fork [1]"
    assert _started(tmp_path, "busy") == "forkserver [1]"


def _blocked_signals(thread: threading.Thread) -> int:
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)


def test_ctrl_c_never_lands_in_the_lease_heartbeat(tmp_path: Path) -> None:
    # The main thread blocks Ctrl-C while workers fork; a heartbeat that did not block it too
    # would receive it then, and Python would raise it in the main thread inside fork handlers.
    sigint = 1 << (signal.SIGINT - 1)
    with hold_lease(str(tmp_path / "out"), "run", timing=TIMING) as held:
        deadline = time.monotonic() + 10
        while not _blocked_signals(held.heartbeat) & sigint and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _blocked_signals(held.heartbeat) & sigint
        assert not _blocked_signals(threading.current_thread()) & sigint
