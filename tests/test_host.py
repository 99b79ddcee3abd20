"""What a run asks of its host: fork only while every other thread is held still, and keep freed
activation memory for the next batch."""

from __future__ import annotations

import json
import os
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
import ctypes, json, os, sys
import audify_batch.run.host as host
from audify_batch.ingest.loader import init_worker
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.query import run_sql

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"

class MallInfo2(ctypes.Structure):  # glibc >= 2.33
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS.split()]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = MallInfo2

def probe(worker_id):  # does the worker map a 64 MiB block on its own, to return it when freed?
    init_worker(worker_id)
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(1 << 26)
    mapped = libc.mallinfo2().hblkhd - before >= 1 << 26
    libc.free(block)
    with open(os.environ["PROBE_OUT"], "w") as out:
        out.write(json.dumps(mapped))

host.init_worker = probe  # forked workers run it
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
    probe = tmp_path / "worker_maps_large_blocks.json"
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(source), str(tmp_path / "out"), str(tiny_model_dir)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PROBE_OUT": str(probe)},
    )
    used = json.loads(done.stdout.strip().splitlines()[-1])
    assert used["workers"] == 1 and used["worker_start"] == "fork" and used["freed_memory_kept"] is True
    # The run kept freed memory for its batches only once its worker had forked: the worker
    # keeps glibc's defaults (large blocks mapped on their own, returned when freed).
    assert json.loads(probe.read_text()) is True


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


START = """
import sys, threading
import torch
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
        started = start_workers(loader, lease, None, torch.device("cpu"))
        print(started.worker_start, list(started.chunks))
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


DEFER = """
import signal, threading, time
from audify_batch.run.host import sigint_deferred

stop = threading.Event()
other = threading.Thread(target=stop.wait)  # like torch's pool threads: SIGINT not blocked
other.start()
try:
    with sigint_deferred() as held:
        signal.pthread_kill(other.ident, signal.SIGINT)  # where the kernel may deliver Ctrl-C
        deadline = time.monotonic() + 60  # Python runs the handler once that thread takes it
        while not held and time.monotonic() < deadline:
            time.sleep(0.01)
        print("inside: not raised" if held else "inside: never delivered", flush=True)
    print("after: not raised", flush=True)
except KeyboardInterrupt:
    print("raised at the end", flush=True)
finally:
    stop.set()
"""


def test_a_deferred_ctrl_c_that_lands_in_another_thread_is_raised_only_at_the_end() -> None:
    # Workers fork inside ``sigint_deferred``; a KeyboardInterrupt raised inside their fork
    # handlers would be swallowed. Blocking SIGINT in the main thread alone lets the kernel hand
    # it to another thread, and Python would still raise it in the main thread at once.
    done = subprocess.run([sys.executable, "-c", DEFER], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["inside: not raised", "raised at the end"]
