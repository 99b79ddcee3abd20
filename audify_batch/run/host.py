"""What a run asks of its host: the device, decode workers and how they start.

Workers start with ``fork`` where that is safe: it copies the run, whose modules are loaded
already, and a worker decodes its first block a fraction of a second later. ``forkserver``
starts a fresh interpreter that imports torch before its first worker: about two seconds
(measured over the 33-minute benchmark archive, medians of 3: 437x realtime with ``fork``, 338x with
``forkserver``, the default model on 2 cores). A fork is unsafe while another thread may hold a
lock; the lease heartbeat, the one other Python thread of a local run, is held still between
beats around the fork (``HeldLease.quiesced``), so it does not count. The choice is made just
before the fork (``start_workers``), by the main thread, the only one that starts threads then.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager, nullcontext
from multiprocessing import resource_tracker

import torch
from torch.utils.data import DataLoader

from audify_batch.ingest.loader import SegmentChunk, SegmentDataset, init_worker
from audify_batch.ingest.sources import RecordingRef
from audify_batch.model.checkpoint import ModelCard
from audify_batch.model.cpu_memory import restore_malloc_defaults
from audify_batch.run.config import LabelConfig
from audify_batch.store.lease import HeldLease


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        build = (
            "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA device is visible"
        )
        raise ValueError(f"--device {name}: {build}; use --device cpu or auto")
    return torch.device(name)


def choose_workers(config: LabelConfig, device: torch.device) -> int:
    """Decode workers: on GPU as wide as the host allows; on CPU half the cores, at least two.

    On the 2-core reference machine two workers beside a 2-thread model measured fastest
    (bench/bench_pipeline.py: 2.6 s vs 3.2 s with one worker for 33 min of 44.1 kHz FLAC).
    """
    if config.runtime.workers is not None:
        return config.runtime.workers
    cores = cpu_count()
    return max(1, min(8, cores - 1)) if device.type == "cuda" else max(2, cores // 2)


def loader_workers(config: LabelConfig, device: torch.device, n_recordings: int) -> int:
    """The DataLoader's workers: ``choose_workers``, never more than the recordings to decode."""
    return min(choose_workers(config, device), max(1, n_recordings))


def worker_start_method(quiet: Collection[threading.Thread] = ()) -> str:
    """``fork`` (fast) when every other thread of the process is one of ``quiet``: threads the
    caller holds still, outside any lock, while the workers fork; else ``forkserver``.

    A process whose other threads run freely (Prefect's event loop and log handlers, s3fs's
    I/O loop) cannot be forked safely: the copy may hold a lock no thread will ever release.
    """
    others = [thread for thread in threading.enumerate() if thread is not threading.current_thread()]
    return "fork" if all(thread in quiet for thread in others) else "forkserver"


def start_worker(worker_id: int) -> None:
    """A decode worker's set-up: glibc's malloc defaults again, not the settings a forked worker
    inherits from the model's process (``cpu_memory``), then ``ingest.loader.init_worker``."""
    restore_malloc_defaults()
    init_worker(worker_id)


def make_loader(
    refs: list[RecordingRef], config: LabelConfig, card: ModelCard, device: torch.device, start: str | None
) -> DataLoader:
    """The DataLoader of a run; its workers start by ``start`` (fork, forkserver or spawn)."""
    grid = config.segmenting.grid(card.segment_s, card.frontend.sample_rate_hz)
    dataset = SegmentDataset(
        refs, grid, config.runtime.batch_size, config.storage_options, config.retry.policy()
    )
    workers = loader_workers(config, device, len(refs))
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=start_worker if workers else None,
        prefetch_factor=4 if workers else None,
        multiprocessing_context=start if workers else None,
    )


def start_workers(
    loader: DataLoader, lease: HeldLease, pinned: str | None
) -> tuple[Iterator[SegmentChunk], str | None]:
    """Start the loader's workers; its chunks and how the workers started (None: no workers).

    The start method is decided here, just before the fork, by the one thread that could start
    another (``pinned``: the user's choice). A ``fork`` holds the heartbeat still; a Ctrl-C that
    lands meanwhile waits until the workers are up (``sigint_deferred``), and one that lands while
    the heartbeat finishes a beat interrupts the run at once.
    """
    if not loader.num_workers:
        return iter(loader), None
    start = pinned or worker_start_method(quiet=(lease.heartbeat,))
    loader.multiprocessing_context = start
    with lease.quiesced() if start == "fork" else nullcontext(), sigint_deferred():
        resource_tracker.ensure_running()  # started now, it inherits the blocked Ctrl-C
        return iter(loader), start


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C back for the duration; it is delivered (as KeyboardInterrupt) at the end.

    CPython swallows a KeyboardInterrupt raised inside its fork handlers, so a Ctrl-C that
    lands while DataLoader workers fork would be lost. The workers inherit the blocked mask
    and unblock it themselves once they ignore SIGINT (``init_worker``).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
