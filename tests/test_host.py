"""What a run asks of its host: fork only while every other thread is held still, and keep freed
activation memory for the next batch."""

from __future__ import annotations

import json
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
import resource, sys
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset
from audify_batch.ingest.loader import init_worker
from audify_batch.model.cpu_memory import keep_freed_memory
from audify_batch.run.host import start_worker

class Faults(IterableDataset):
    def __iter__(self):
        np.ones(1 << 24, np.float32).sum()  # 64 MiB, freed again
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        np.ones(1 << 24, np.float32).sum()
        yield torch.tensor(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

assert keep_freed_memory()
setup = {"run": start_worker, "plain": init_worker}[sys.argv[1]]
loader = DataLoader(
    Faults(), batch_size=None, num_workers=1, worker_init_fn=setup, multiprocessing_context="fork"
)
print(int(next(iter(loader))))
"""


def _worker_faults(setup: str) -> int:
    done = subprocess.run([sys.executable, "-c", WORKER, setup], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def test_decode_workers_forked_from_a_run_go_back_to_mallocs_defaults() -> None:
    # A worker forked from the model's process inherits its malloc settings: it would keep its
    # freed memory (no faults on reuse) and hold its peak. A run's workers give memory back.
    inherited = _worker_faults("plain")
    restored = _worker_faults("run")
    assert inherited < 100 and restored > 4 * max(inherited, 100)
