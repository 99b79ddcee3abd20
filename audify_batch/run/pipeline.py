"""Label an archive: sources -> DataLoader workers (decode, resample, segment) -> model -> one writer.

``label_archive`` is the whole job as a plain function; the CLI and the
Prefect flow both call it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from audify_batch.ingest.loader import SegmentDataset, SegmentingConfig, init_worker
from audify_batch.ingest.retry import RetryPolicy
from audify_batch.ingest.segments import LastWindow
from audify_batch.ingest.sources import RecordingRef, discover_all, modified_between
from audify_batch.model.checkpoint import DEFAULT_MODEL_DIR, ModelCard, load_checkpoint
from audify_batch.model.inference import Precision, prepare_for_inference, resolve_precision
from audify_batch.model.network import AudioClassifier
from audify_batch.records import Progress, RunSummary
from audify_batch.run.rows import RowCollector
from audify_batch.run.shards import Shard, in_shard
from audify_batch.store import schema as S
from audify_batch.store.sink import ParquetSink


@dataclass(frozen=True)
class LabelConfig:
    """Everything one labeling run needs; validated on construction."""

    source: str | tuple[str, ...]  # a folder, glob, list file or file; or several of them
    out: str
    model_dir: str = str(DEFAULT_MODEL_DIR)
    hop_s: float = 5.0
    last_window: LastWindow = LastWindow.PAD
    min_last_s: float = 1.0
    top_k: int = 5
    batch_size: int = 64
    workers: int | None = None
    threads: int | None = None
    device: str = "auto"
    precision: Precision = Precision.AUTO
    commit_every_segments: int = 20_000
    commit_every_s: float = 60.0
    worker_start: str | None = None  # fork, forkserver or spawn; None: fork unless threads run
    read_attempts: int = 4  # per recording, on transient storage errors
    retry_delay_s: float = 0.5  # first backoff; doubles per attempt, at most 16x
    modified_after_s: float | None = None  # only recordings modified at or after (POSIX seconds)
    modified_before_s: float | None = None  # ... and before
    shard_index: int = 0  # this run labels the recordings of shard shard_index of shard_count
    shard_count: int = 1
    batch_id: str | None = None  # ties the shard runs of one fan-out together
    storage_options: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.top_k <= 0 or self.batch_size <= 0:
            raise ValueError("top_k and batch_size must be positive")
        if self.workers is not None and self.workers < 0:
            raise ValueError("workers must be >= 0 (0 decodes in the main process)")
        if self.threads is not None and self.threads <= 0:
            raise ValueError("threads must be positive")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device}")
        if self.worker_start not in (None, "fork", "forkserver", "spawn"):
            raise ValueError(f"worker_start must be fork, forkserver or spawn, got {self.worker_start}")
        SegmentingConfig(hop_s=self.hop_s, last_window=self.last_window, min_last_s=self.min_last_s)
        self.retry_policy()
        Shard(self.shard_index, self.shard_count)
        after, before = self.modified_after_s, self.modified_before_s
        if after is not None and before is not None and after >= before:
            raise ValueError("modified_after_s must be earlier than modified_before_s")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.read_attempts, self.retry_delay_s, 16 * self.retry_delay_s)

    def public_dict(self) -> dict[str, Any]:
        """The settings as recorded in the runs table (never storage options/secrets)."""
        data = asdict(self)
        data.pop("storage_options")
        data["last_window"] = self.last_window.value
        data["precision"] = self.precision.value
        data["source"] = self.source if isinstance(self.source, str) else list(self.source)
        return data


ProgressCallback = Callable[[Progress], None]
# Entered around each model step (never around decoding or writing): e.g. a Prefect global
# concurrency slot per GPU, so that several runs share one GPU and still overlap their I/O.
ModelGate = Callable[[], AbstractContextManager[object]]


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def choose_workers(config: LabelConfig, device: torch.device) -> int:
    """Decode workers: on GPU as wide as the host allows; on CPU half the cores, at least two.

    On the 2-core reference machine two workers beside a 2-thread model measured fastest
    (bench/bench_pipeline.py: 2.6 s vs 3.2 s with one worker for 33 min of 44.1 kHz FLAC).
    """
    if config.workers is not None:
        return config.workers
    cores = _cpu_count()
    return max(1, min(8, cores - 1)) if device.type == "cuda" else max(2, cores // 2)


def config_hash(card: ModelCard, config: LabelConfig, precision: Precision) -> str:
    """Hash of everything that changes the output rows for a recording."""
    keyed = {
        "model": [card.name, card.version, card.weights_sha256],
        "hop_s": config.hop_s,
        "last_window": config.last_window.value,
        "min_last_s": config.min_last_s,
        "top_k": config.top_k,
        "precision": precision.value,
    }
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def _run_row(run: _Run, status: str, collector: RowCollector | None) -> dict[str, Any]:
    counts = collector.counts() if collector else {}
    return {
        S.RUN_ID: run.run_id,
        S.STARTED_AT: run.started_at,
        S.FINISHED_AT: datetime.now(UTC) if status != "running" else None,
        S.RUN_STATUS: status,
        S.CONFIG_JSON: json.dumps(run.config.public_dict(), sort_keys=True),
        S.CONFIG_HASH: run.config_hash,
        S.MODEL_NAME: run.card.name,
        S.MODEL_VERSION: run.card.version,
        S.N_RECORDINGS: run.n_recordings,
        S.N_LABELED: counts.get(S.STATUS_LABELED, 0),
        S.N_FAILED: counts.get(S.STATUS_FAILED, 0),
        S.N_SKIPPED: counts.get(S.STATUS_SKIPPED, 0),
        S.N_SEGMENTS: collector.n_segments if collector else 0,
        S.AUDIO_S: collector.audio_s if collector else 0.0,
        S.WALL_S: time.perf_counter() - run.started_clock,
    }


@dataclass
class _Run:
    config: LabelConfig
    card: ModelCard
    run_id: str
    config_hash: str
    n_recordings: int = 0
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_clock: float = field(default_factory=time.perf_counter)


def split_new(
    refs: list[RecordingRef], sink: ParquetSink, hash_: str
) -> tuple[list[RecordingRef], list[RecordingRef]]:
    """(to label, unchanged since labeled with the same settings)."""
    done = sink.labeled_keys(hash_)
    todo, unchanged = [], []
    for ref in refs:
        key = done.get(ref.uri)
        same = key is not None and (key.size_bytes, key.mtime_s) == (ref.size_bytes, ref.mtime_s)
        (unchanged if same and ref.error is None else todo).append(ref)
    return todo, unchanged


def make_loader(
    refs: list[RecordingRef], config: LabelConfig, model_rate_hz: int, device: torch.device
) -> DataLoader:
    dataset = SegmentDataset(
        refs,
        SegmentingConfig(
            hop_s=config.hop_s,
            last_window=config.last_window,
            min_last_s=config.min_last_s,
            model_rate_hz=model_rate_hz,
        ),
        config.batch_size,
        config.storage_options,
        config.retry_policy(),
    )
    workers = min(choose_workers(config, device), max(1, len(refs)))
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=init_worker if workers else None,
        prefetch_factor=4 if workers else None,
        multiprocessing_context=(config.worker_start or worker_start_method()) if workers else None,
    )


def worker_start_method() -> str:
    """``fork`` (fast) from a single-threaded process; else ``forkserver``.

    A process that runs other threads (Prefect's event loop and log handlers, say) cannot be
    forked safely: the copy may hold a lock no thread will ever release.
    """
    return "fork" if threading.active_count() == 1 else "forkserver"


def _label_loop(
    run: _Run,
    model: AudioClassifier,
    loader: DataLoader,
    collector: RowCollector,
    sink: ParquetSink,
    progress: ProgressCallback | None,
    model_gate: ModelGate,
) -> None:
    precision = resolve_precision(run.config.precision, next(model.parameters()).device)
    last_commit = time.perf_counter()
    for chunk in loader:
        with model_gate():
            collector.add_chunk(model, chunk, precision)
        due = time.perf_counter() - last_commit >= run.config.commit_every_s
        if collector.ready_segments >= run.config.commit_every_segments or (due and collector.has_ready):
            collector.commit(sink)
            last_commit = time.perf_counter()
        if progress:
            progress(collector.progress(run.n_recordings, time.perf_counter() - run.started_clock))
    collector.commit(sink)


def find_recordings(config: LabelConfig) -> list[RecordingRef]:
    """The recordings this run is about: discovered, filtered by modification time and shard."""
    refs = discover_all(config.source, config.storage_options)
    refs = modified_between(refs, config.modified_after_s, config.modified_before_s)
    return [ref for ref in refs if in_shard(ref.uri, config.shard_index, config.shard_count)]


def label_archive(
    config: LabelConfig, progress: ProgressCallback | None = None, model_gate: ModelGate = nullcontext
) -> RunSummary:
    """Label every new or changed recording of ``config.source`` into ``config.out``."""
    device = choose_device(config.device)
    if device.type == "cpu":
        torch.set_num_threads(config.threads or _cpu_count())
    model, card = load_checkpoint(Path(config.model_dir))
    model = prepare_for_inference(model, device)
    precision = resolve_precision(config.precision, device)
    run = _Run(config, card, new_run_id(), config_hash(card, config, precision))
    sink = ParquetSink(config.out, card.name, card.version, run.run_id, config.storage_options)
    if config.shard_count == 1:  # shards write side by side; their parent flow cleans up
        sink.remove_debris()
    refs = find_recordings(config)
    todo, unchanged = split_new(refs, sink, run.config_hash)
    run.n_recordings = len(refs)
    collector = RowCollector(
        refs=todo, card=card, run_id=run.run_id, config_hash=run.config_hash, top_k=config.top_k
    )
    sink.write_run(_run_row(run, "running", None))
    try:
        if todo:
            _label_loop(
                run,
                model,
                make_loader(todo, config, card.frontend.sample_rate_hz, device),
                collector,
                sink,
                progress,
                model_gate,
            )
        collector.commit_skipped(sink, unchanged)
    except BaseException:
        sink.write_run(_run_row(run, S.RUN_FAILED, collector))
        raise
    sink.write_run(_run_row(run, S.RUN_COMPLETED, collector))
    return collector.summary(
        run.run_id,
        config.out,
        f"{card.name} {card.version}",
        len(refs),
        time.perf_counter() - run.started_clock,
    )
