"""What a run asks of its host: the device, decode workers and how they start.

Workers start with ``fork`` where that is safe: it copies the run, whose modules are loaded
already, and a worker decodes its first block a fraction of a second later. ``forkserver``
starts a fresh interpreter that imports torch before its first worker: about two seconds
(measured over the 33-minute benchmark archive, medians of 3: 437x realtime with ``fork``, 338x with
``forkserver``, the default model on 2 cores). A fork is unsafe while another thread may hold a
lock; the lease heartbeat, the one other Python thread of a local run, is held still between
beats around the fork (``HeldLease.quiesced``), so it does not count. The choice is made just
before the fork (``start_workers``) by the thread that runs the label loop: when every other
thread is the heartbeat, which starts none, no new thread can appear before the fork.

Only then, with the workers forked, does the run keep freed memory for its batches
(``keep_batch_memory``): workers never inherit that setting and keep glibc's defaults.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from multiprocessing import resource_tracker
from types import FrameType

import torch
from torch.utils.data import DataLoader

from audify_batch.ingest.loader import SegmentChunk, SegmentDataset, init_worker
from audify_batch.ingest.sources import RecordingRef
from audify_batch.model.checkpoint import ModelCard
from audify_batch.model.inference import keep_batch_memory
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


def make_loader(
    refs: list[RecordingRef], config: LabelConfig, card: ModelCard, device: torch.device
) -> DataLoader:
    """The DataLoader of a run; how its workers start is decided when they do (``start_workers``)."""
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
        worker_init_fn=init_worker if workers else None,
        prefetch_factor=4 if workers else None,
    )


@dataclass(frozen=True)
class StartedLoader:
    """A run's loader once its workers are up."""

    chunks: Iterator[SegmentChunk]
    worker_start: str | None  # fork, forkserver or spawn; None: no workers
    freed_memory_kept: bool  # the run keeps freed activations for the next batch (``cpu_memory``)


def start_workers(
    loader: DataLoader, lease: HeldLease, pinned: str | None, device: torch.device
) -> StartedLoader:
    """Start the loader's workers (``pinned``: the user's start method), then keep batch memory.

    A ``fork`` holds the heartbeat still; a Ctrl-C that lands meanwhile waits until the workers
    are up (``sigint_deferred``), and one that lands while the heartbeat finishes a beat
    interrupts the run at once.
    """
    if not loader.num_workers:
        return StartedLoader(iter(loader), None, keep_batch_memory(device))
    start = pinned or worker_start_method(quiet=(lease.heartbeat,))
    loader.multiprocessing_context = start
    with lease.quiesced() if start == "fork" else nullcontext(), sigint_deferred():
        resource_tracker.ensure_running()  # started now, it inherits the blocked Ctrl-C
        chunks = iter(loader)
    return StartedLoader(chunks, start, keep_batch_memory(device))


@contextmanager
def sigint_deferred() -> Iterator[Sequence[int]]:
    """Hold Ctrl-C back for the duration; it is delivered (as KeyboardInterrupt) at the end.

    CPython swallows a KeyboardInterrupt raised inside its fork handlers, so a Ctrl-C that
    lands while DataLoader workers fork would be lost. Blocking SIGINT in this thread is not
    enough: the kernel then hands it to another thread (torch's pools, the lease heartbeat) and
    Python still runs the handler here. So the handler only notes it for the duration, and the
    blocked mask is for the workers, which inherit it and unblock it themselves once they ignore
    SIGINT (``init_worker``). Yields the signals held back so far (read-only).
    """
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return

    def note(signum: int, _frame: FrameType | None) -> None:
        noted.append(signum)

    previous = signal.signal(signal.SIGINT, note)  # None: a handler not set from Python
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield noted
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending one is noted now
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
        if noted:
            signal.raise_signal(signal.SIGINT)  # to the handler the run had
