"""Label an archive: sources -> DataLoader workers (decode, resample, segment) -> model -> one writer.

``label_archive`` is the whole job as a plain function; the CLI and the
Prefect flow both call it.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from audify_batch.ingest.loader import SegmentChunk
from audify_batch.ingest.sources import RecordingRef, discover_all, fingerprint, modified_between
from audify_batch.model.checkpoint import ModelCard
from audify_batch.model.inference import Precision, TorchModel
from audify_batch.model.thresholds_file import apply_thresholds
from audify_batch.records import Progress, RunInterrupted, RunSummary
from audify_batch.run.batches import attach_lease
from audify_batch.run.config import LabelConfig, OutputConfig, UsedRuntime
from audify_batch.run.host import (
    choose_device,
    cpu_count,
    loader_workers,
    make_loader,
    start_workers,
)
from audify_batch.run.manifest import read_manifest_slice
from audify_batch.run.ports import Model, Sink
from audify_batch.run.rows import RowCollector
from audify_batch.run.shards import in_shard
from audify_batch.store import schema as S
from audify_batch.store.lease import HeldLease, hold_lease
from audify_batch.store.sink import ParquetSink

ProgressCallback = Callable[[Progress], None]
FINGERPRINT_THREADS = 16  # rerun checks: range reads in flight at once (object storage latency)
# Entered around each model step (never around decoding or writing): e.g. a Prefect global
# concurrency slot per GPU, so that several runs share one GPU and still overlap their I/O.
ModelGate = Callable[[], AbstractContextManager[object]]


def config_hash(card: ModelCard, config: LabelConfig, precision: Precision) -> str:
    """Hash of everything that changes the output rows for a recording."""
    grid = config.segmenting.grid(card.segment_s, card.frontend.sample_rate_hz)
    keyed: dict[str, Any] = {
        "model": [card.name, card.version, card.weights_sha256],
        "hop_s": grid.hop_s,
        "last_window": grid.last_window.value,
        "min_last_s": grid.min_last_s,
        "top_k": config.output.top_k,
        "precision": precision.value,
    }
    if config.runtime.thresholds_file is not None:  # other thresholds, other `detected` labels
        keyed["thresholds"] = list(card.thresholds)
    if card.known_gate is not None:  # a card refitted in place (training/thresholds.py): other `detected`
        keyed["detection"] = [list(card.thresholds), card.known_gate.to_dict()]
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def _run_row(run: _Run, status: str, collector: RowCollector | None) -> dict[str, Any]:
    counts = collector.counts() if collector else {}
    settings = run.config.public_dict()  # what was asked; "used": what the run resolved it to
    if run.used is not None:
        settings["used"] = asdict(run.used)
    return {
        S.RUN_ID: run.run_id,
        S.STARTED_AT: run.started_at,
        S.FINISHED_AT: datetime.now(UTC) if status != S.RUN_RUNNING else None,
        S.RUN_STATUS: status,
        S.CONFIG_JSON: json.dumps(settings, sort_keys=True),
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
    used: UsedRuntime | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_clock: float = field(default_factory=time.perf_counter)


def split_new(
    refs: list[RecordingRef],
    sink: Sink,
    hash_: str,
    storage_options: dict[str, Any] | None = None,
) -> tuple[list[RecordingRef], list[RecordingRef]]:
    """(to label, unchanged since labeled with the same settings).

    Unchanged means the same uri, size and modification time, and then the same content
    fingerprint: a same-size copy that kept the old time (``cp -p``, ``rsync -t``) is labeled
    again. Only those candidates are fingerprinted (two 64 KiB range reads each, on
    ``FINGERPRINT_THREADS`` threads); one that cannot be read is labeled, and fails there.
    """
    done = sink.labeled_keys(hash_)

    def candidate(ref: RecordingRef) -> bool:
        key = done.get(ref.uri)
        return (
            ref.error is None
            and key is not None
            and key.fingerprint is not None
            and (key.size_bytes, key.mtime_s) == (ref.size_bytes, ref.mtime_s)
        )

    def same_content(ref: RecordingRef) -> bool:
        try:
            return fingerprint(ref.uri, ref.size_bytes, storage_options) == done[ref.uri].fingerprint
        except OSError:
            return False

    candidates = [ref for ref in refs if candidate(ref)]
    with ThreadPoolExecutor(max_workers=FINGERPRINT_THREADS) as pool:
        verdicts = list(pool.map(same_content, candidates))
    unchanged = {ref.uri for ref, same in zip(candidates, verdicts, strict=True) if same}
    return [ref for ref in refs if ref.uri not in unchanged], [ref for ref in refs if ref.uri in unchanged]


def run_loop(
    chunks: Iterable[SegmentChunk],
    model: Model,
    collector: RowCollector,
    sink: Sink,
    output: OutputConfig,
    model_gate: ModelGate = nullcontext,
    after_chunk: Callable[[], None] | None = None,
) -> None:
    """Score each chunk, hand the rows to ``collector`` and commit them to ``sink`` in parts.

    ``model_gate`` is entered around the model call only, once per chunk with segments;
    bookkeeping and writing run outside it. A part is committed once
    ``output.commit_every_segments`` segments are ready, or ``output.commit_every_s``
    after the last commit; the rest at the end.
    """
    last_commit = time.perf_counter()
    for chunk in chunks:
        outputs = None
        if len(chunk):
            with model_gate():
                outputs = model.predict(chunk.waveforms, output.top_k)
        collector.add(chunk, outputs)
        collector.spill(sink)  # a long recording's rows stream into its part: memory stays flat
        due = time.perf_counter() - last_commit >= output.commit_every_s
        if collector.ready_segments >= output.commit_every_segments or (due and collector.has_ready):
            collector.commit(sink)
            last_commit = time.perf_counter()
        if after_chunk:
            after_chunk()
    collector.commit(sink)


def _label_loop(
    run: _Run,
    model: Model,
    loader: DataLoader,
    collector: RowCollector,
    sink: Sink,
    progress: ProgressCallback | None,
    model_gate: ModelGate,
    lease: HeldLease,
    device: torch.device,
) -> None:
    def report() -> None:
        if progress:
            progress(collector.progress(run.n_recordings, time.perf_counter() - run.started_clock))

    started = start_workers(loader, lease, run.config.runtime.worker_start, device)
    if run.used is not None:
        run.used = replace(
            run.used, worker_start=started.worker_start, freed_memory_kept=started.freed_memory_kept
        )
    run_loop(started.chunks, model, collector, sink, run.config.output, model_gate, report)


class ArchiveSource:
    """``Source`` over fsspec: the recordings ``find_recordings`` finds for ``config``."""

    def __init__(self, config: LabelConfig) -> None:
        self.config = config

    def recordings(self) -> list[RecordingRef]:
        return find_recordings(self.config)


def find_recordings(config: LabelConfig) -> list[RecordingRef]:
    """The recordings this run is about, filtered by modification time.

    With a manifest (a fan-out's one listing), this shard's slice of it and no listing of the
    source; without one, the source discovered here and filtered by shard.
    """
    source, shard = config.source, config.shard
    if shard.manifest is not None:
        refs = read_manifest_slice(shard.manifest, shard.shard, source.source, config.storage_options)
    else:
        found = discover_all(source.source, config.storage_options)
        refs = [ref for ref in found if in_shard(ref.uri, shard.index, shard.count)]
    return modified_between(refs, source.modified_after_s, source.modified_before_s)


def label_archive(
    config: LabelConfig, progress: ProgressCallback | None = None, model_gate: ModelGate = nullcontext
) -> RunSummary:
    """Label every new or changed recording of ``config.source`` into ``config.out``.

    The run holds the lease on OUT throughout (``store/lease.py``: one writer per OUT; the runs
    of one fan-out share their batch's lease). Another live writer there ends it at once with
    ``OutputBusyError``, or after waiting ``runtime.lease_wait_s`` for the lease.
    """
    run_id = new_run_id()
    batch_id, wait_s = config.shard.batch_id, config.runtime.lease_wait_s
    with hold_lease(config.out, run_id, config.storage_options, batch_id=batch_id, wait_s=wait_s) as lease:
        return _label_archive(config, run_id, lease, progress, model_gate)


def _label_archive(
    config: LabelConfig,
    run_id: str,
    lease: HeldLease,
    progress: ProgressCallback | None,
    model_gate: ModelGate,
) -> RunSummary:
    runtime = config.runtime
    device = choose_device(runtime.device)
    if device.type == "cpu":
        torch.set_num_threads(runtime.threads or cpu_count())
    model = TorchModel.load(Path(runtime.model_dir), device, runtime.precision)
    if runtime.thresholds_file is not None:
        calibrated = apply_thresholds(model.card, runtime.thresholds_file, config.storage_options)
        model = replace(model, card=calibrated)
    card = model.card
    if config.output.top_k > len(card.labels):
        raise ValueError(f"--top-k {config.output.top_k} is more than the model's {len(card.labels)} labels")
    run = _Run(config, card, run_id, config_hash(card, config, model.precision))
    sink = ParquetSink(
        config.out, card.name, card.version, run.run_id, config.storage_options, config.output.float16_copy
    )
    attach_lease(sink, lease, clean=config.shard.count == 1)  # shards never clean: the parent does
    refs = find_recordings(config)
    todo, unchanged = split_new(refs, sink, run.config_hash, config.storage_options)
    run.n_recordings = len(refs)
    workers = loader_workers(config, device, len(todo))
    run.used = UsedRuntime(str(device), model.precision.value, workers, torch.get_num_threads())
    collector = RowCollector(refs=todo, card=card, run_id=run.run_id, config_hash=run.config_hash)
    sink.write_run(_run_row(run, S.RUN_RUNNING, None))
    try:
        if todo:
            _label_loop(
                run,
                model,
                make_loader(todo, config, card, device),
                collector,
                sink,
                progress,
                model_gate,
                lease,
                device,
            )
        collector.commit_skipped(sink, unchanged)
    except KeyboardInterrupt:
        with sigint_ignored():  # a second Ctrl-C must not break the commit of what is complete
            collector.commit(sink)
            _write_last_run_row(sink, run, S.RUN_INTERRUPTED, collector)
        raise RunInterrupted(_summary(run, collector, len(refs))) from None
    except BaseException:
        _write_last_run_row(sink, run, S.RUN_FAILED, collector)
        raise
    sink.write_run(_run_row(run, S.RUN_COMPLETED, collector))
    return _summary(run, collector, len(refs))


def _summary(run: _Run, collector: RowCollector, n_recordings: int) -> RunSummary:
    card = run.card
    model = f"{card.name} {card.version}"
    wall_s = time.perf_counter() - run.started_clock
    return collector.summary(run.run_id, run.config.out, model, n_recordings, wall_s)


def _write_last_run_row(sink: Sink, run: _Run, status: str, collector: RowCollector) -> None:
    """Record how the run ended, if OUT still takes writes (a full disk may not).

    The error that ended the run is what the user must see, not a second one about its run
    row; a run left ``running`` is marked ``interrupted`` by the next run.
    """
    with suppress(OSError):
        sink.write_run(_run_row(run, status, collector))


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C for the duration (main thread only; elsewhere signals are not ours)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
