"""Worker side: decode, resample and segment recordings inside DataLoader workers.

``SegmentDataset`` is an ``IterableDataset`` over the run's recordings.
Worker ``w`` of ``n`` takes recordings ``w, w + n, w + 2n, ...``: every
recording goes to exactly one worker. Each worker yields ``SegmentChunk``s:
up to ``batch_size`` model-rate segments (from one or more recordings) plus
the outcomes of the recordings it finished. A recording's segments always
arrive before (or with) its outcome. Workers never write output.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, TypedDict

import numpy as np
import torch
from fsspec.core import url_to_fs
from torch.utils.data import IterableDataset, get_worker_info

from audify_batch.fs import is_local
from audify_batch.ingest.audio_io import (
    EMPTY_FILE_REASON,
    AudioDecodeError,
    decode_blocks,
    io_reason,
    open_audio,
    truncation,
)
from audify_batch.ingest.retry import ReadErrorTrap, RetryPolicy, is_transient
from audify_batch.ingest.segments import Segment, SegmentGrid, segment_audio
from audify_batch.ingest.sources import FileEnds, RecordingRef, read_ends
from audify_batch.records import RecordingStatus

MAX_OUTCOMES_PER_CHUNK = 256
STORAGE_ENV_PREFIXES = ("AWS_", "FSSPEC_")
READ_BLOCK_BYTES = 4 << 20  # read-ahead per open object stream
DEFAULT_RETRY = RetryPolicy()
_NO_WAVEFORM = np.zeros(0, np.float32)  # a piece's waveform once it is in its chunk's buffer


@dataclass(frozen=True)
class RecordingOutcome:
    """What a worker learned about one recording."""

    index: int
    status: RecordingStatus
    error: str | None = None
    fingerprint: str | None = None
    sample_rate_hz: int | None = None
    channels: int | None = None
    duration_s: float | None = None
    n_segments: int = 0


class _RecordingFacts(TypedDict):
    """What the header says about a recording: the optional fields of ``RecordingOutcome``."""

    fingerprint: str
    sample_rate_hz: int
    channels: int
    duration_s: float


@dataclass(frozen=True)
class SegmentPiece:
    recording_index: int
    segment: Segment
    waveform: np.ndarray
    sample_rate_hz: int  # the recording's own rate: the unit of the segment's bounds


@dataclass
class SegmentChunk:
    """One worker hand-off: segment tensors plus finished recordings."""

    recording_index: torch.Tensor  # int64 (B,)
    segment_index: torch.Tensor  # int64 (B,)
    start_sample: torch.Tensor  # int64 (B,), source rate
    end_sample: torch.Tensor  # int64 (B,), source rate
    sample_rate_hz: torch.Tensor  # int64 (B,), the source rate of each segment's recording
    waveforms: torch.Tensor  # float32 (B, window) at the model rate
    finished: tuple[RecordingOutcome, ...] = ()

    def pin_memory(self) -> SegmentChunk:
        return SegmentChunk(
            self.recording_index,
            self.segment_index,
            self.start_sample,
            self.end_sample,
            self.sample_rate_hz,
            self.waveforms.pin_memory(),
            self.finished,
        )

    def __len__(self) -> int:
        return int(self.recording_index.shape[0])


@dataclass
class _ChunkBuilder:
    """The next chunk: each segment's waveform is copied into the chunk's one buffer as it comes.

    No list of waveforms is stacked at the end, and in a DataLoader worker (``shared``) the
    buffer is shared memory from the start, as torch's own collate does, so handing the chunk
    to the run copies nothing: a chunk costs its buffer once, not three times over.
    """

    window: int
    batch_size: int
    shared: bool = False
    pieces: list[SegmentPiece] = field(default_factory=list)  # waveforms dropped: in ``waves``
    finished: list[RecordingOutcome] = field(default_factory=list)
    waves: torch.Tensor | None = None

    def add(self, piece: SegmentPiece) -> None:
        if self.waves is None:
            self.waves = self._buffer()
        self.waves[len(self.pieces)] = torch.from_numpy(piece.waveform)
        self.pieces.append(replace(piece, waveform=_NO_WAVEFORM))

    def _buffer(self) -> torch.Tensor:
        shape = (self.batch_size, self.window)
        if not self.shared:
            return torch.from_numpy(np.empty(shape, np.float32))
        storage = torch.UntypedStorage._new_shared(self.batch_size * self.window * 4)  # float32: 4 bytes
        return torch.empty(0, dtype=torch.float32).set_(storage).view(shape)

    def take(self) -> SegmentChunk:
        pieces, self.pieces = self.pieces, []
        finished, self.finished = tuple(self.finished), []
        waves, self.waves = self.waves, None
        waveforms = torch.zeros((0, self.window)) if waves is None else waves[: len(pieces)]
        return SegmentChunk(
            torch.tensor([p.recording_index for p in pieces], dtype=torch.int64),
            torch.tensor([p.segment.index for p in pieces], dtype=torch.int64),
            torch.tensor([p.segment.start_sample for p in pieces], dtype=torch.int64),
            torch.tensor([p.segment.end_sample for p in pieces], dtype=torch.int64),
            torch.tensor([p.sample_rate_hz for p in pieces], dtype=torch.int64),
            waveforms,
            finished,
        )


class _Counted:
    """Pass blocks through, counting samples."""

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self.blocks = blocks
        self.n_samples = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self.blocks:
            self.n_samples += len(block)
            yield block


def _failed(index: int, reason: str, **facts: Any) -> RecordingOutcome:
    return RecordingOutcome(index, RecordingStatus.FAILED, reason, **facts)


def _os_reason(error: OSError) -> str:
    return io_reason(error) or f"cannot read ({type(error).__name__}: {error})"


def recording_pieces(
    index: int,
    ref: RecordingRef,
    cfg: SegmentGrid,
    storage_options: dict[str, Any] | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> Iterator[SegmentPiece | RecordingOutcome]:
    """Segments of one recording, then its outcome; every failure becomes an outcome.

    A transient storage error restarts the read with backoff; segments already
    yielded by an earlier attempt are not yielded again (decoding is deterministic).
    """
    if ref.error:
        yield _failed(index, ref.error)
        return
    next_segment = 0
    for attempt in range(1, retry.attempts + 1):
        try:
            for item in _decode_recording(index, ref, cfg, storage_options):
                if isinstance(item, SegmentPiece):
                    if item.segment.index < next_segment:
                        continue
                    next_segment = item.segment.index + 1
                yield item
            return
        except AudioDecodeError as error:
            yield _failed(index, error.reason)
            return
        except Exception as error:
            transient = is_transient(error)
            if not transient and not isinstance(error, OSError):
                raise  # not a storage problem: a bug, let it surface
            if not transient or attempt == retry.attempts:
                yield _failed(index, _read_failure(error, attempt))
                return
            time.sleep(retry.delay_s(attempt))


def _read_failure(error: BaseException, attempts: int) -> str:
    reason = _os_reason(error) if isinstance(error, OSError) else f"cannot read ({type(error).__name__})"
    return reason if attempts == 1 else f"{reason}, after {attempts} attempts"


def _open_stream(uri: str, storage_options: dict[str, Any] | None) -> Any:
    """A streaming handle: local files as they are; remote objects with bounded read-ahead."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    if is_local(fs):
        return fs.open(path, "rb")
    return fs.open(path, "rb", block_size=READ_BLOCK_BYTES, cache_type="readahead")


def _decode_recording(
    index: int, ref: RecordingRef, cfg: SegmentGrid, storage_options: dict[str, Any] | None
) -> Iterator[SegmentPiece | RecordingOutcome]:
    if ref.size_bytes == 0:
        yield _failed(index, EMPTY_FILE_REASON)
        return
    ends = read_ends(ref.uri, ref.size_bytes, storage_options)  # the fingerprint's bytes, and headers
    with _open_stream(ref.uri, storage_options) as handle:
        trap = ReadErrorTrap(handle)
        try:
            yield from _segments_of(index, ref, cfg, trap, ends)
        except AudioDecodeError:
            trap.raise_if_failed()  # a connection fault, not bad audio
            raise
        trap.raise_if_failed()


def _segments_of(
    index: int, ref: RecordingRef, cfg: SegmentGrid, trap: ReadErrorTrap, ends: FileEnds
) -> Iterator[SegmentPiece | RecordingOutcome]:
    """Segments of the readable frames, then the outcome: labeled, partial (the file is cut
    short: its readable part is labeled and ``error`` says how much), or failed."""
    with open_audio(trap, ref.uri) as audio:
        rate_hz, channels, n_frames = int(audio.samplerate), int(audio.channels), int(audio.frames)
        facts = _RecordingFacts(
            fingerprint=ends.fingerprint(),
            sample_rate_hz=rate_hz,
            channels=channels,
            duration_s=n_frames / rate_hz,
        )
        if n_frames <= 0:
            cut_to_nothing = truncation(ends.head, ends.last, n_frames, rate_hz)
            yield _failed(index, cut_to_nothing or "no audio samples (zero-length audio)", **facts)
            return
        segments = cfg.plan(n_frames, rate_hz)
        blocks = _Counted(decode_blocks(audio, cfg.model_rate_hz, cfg.block_frames, ref.uri))
        for segment, waveform in segment_audio(
            blocks, segments, rate_hz, cfg.model_rate_hz, cfg.window_samples
        ):
            trap.raise_if_failed()  # a failed read looks like the end of the file: never pad it
            yield SegmentPiece(index, segment, waveform, rate_hz)
        trap.raise_if_failed()
        expected = n_frames * cfg.model_rate_hz // rate_hz
        if blocks.n_samples < expected - cfg.model_rate_hz // 10:
            decoded_s = blocks.n_samples / cfg.model_rate_hz
            reason = f"truncated: decoded {decoded_s:.2f} s of {n_frames / rate_hz:.2f} s"
            yield _failed(index, reason, **facts)
            return
        cut_short = truncation(ends.head, ends.last, n_frames, rate_hz)
        status = RecordingStatus.PARTIAL if cut_short else RecordingStatus.LABELED
        yield RecordingOutcome(index, status, cut_short, n_segments=len(segments), **facts)


class SegmentDataset(IterableDataset):
    """Recordings in, ``SegmentChunk``s out; sharded across DataLoader workers."""

    def __init__(
        self,
        refs: list[RecordingRef],
        cfg: SegmentGrid,
        batch_size: int,
        storage_options: dict[str, Any] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        super().__init__()
        self.retry = retry
        self.refs = refs
        self.cfg = cfg
        self.batch_size = batch_size
        self.storage_options = storage_options
        self.parent_pid = os.getpid()
        # A fork server keeps the environment it started with; workers take the run's own
        # storage settings (AWS_* credentials and endpoint, fsspec config) from here.
        self.storage_environ = {k: v for k, v in os.environ.items() if k.startswith(STORAGE_ENV_PREFIXES)}

    def shard(self) -> range:
        info = get_worker_info()
        worker_id, n_workers = (info.id, info.num_workers) if info else (0, 1)
        return range(worker_id, len(self.refs), n_workers)

    def __iter__(self) -> Iterator[SegmentChunk]:
        if get_worker_info() is not None:
            exit_when_process_dies(self.parent_pid)
            os.environ.update(self.storage_environ)
        in_worker = get_worker_info() is not None
        builder = _ChunkBuilder(self.cfg.window_samples, self.batch_size, shared=in_worker)
        for index in self.shard():
            for item in recording_pieces(index, self.refs[index], self.cfg, self.storage_options, self.retry):
                if isinstance(item, SegmentPiece):
                    builder.add(item)
                else:
                    builder.finished.append(item)
                full = len(builder.pieces) >= self.batch_size
                if full or len(builder.finished) >= MAX_OUTCOMES_PER_CHUNK:
                    yield builder.take()
        if builder.pieces or builder.finished:
            yield builder.take()


def exit_when_process_dies(pid: int, every_s: float = 0.5) -> None:
    """End this worker soon after process ``pid`` (the labeling run) is gone, even by kill -9.

    DataLoader's own watchdog watches the worker's parent, which is a fork server, not the
    run, when workers are started that way.
    """

    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="audify-run-watch", daemon=True).start()


def init_worker(_worker_id: int) -> None:
    """Each worker decodes on one thread; the model gets the rest of the machine.

    Ctrl-C in a terminal reaches every process of its group: the run decides what happens
    (commit what is complete, stop), and its workers end when it shuts them down or dies.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked while the run forked us
    sys.excepthook = quiet_hangups
    torch.set_num_threads(1)


def quiet_hangups(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    """A worker's excepthook: say nothing when the run hangs up on it mid-handover.

    A chunk's shared-memory buffer reaches the run as a file descriptor, which the worker's
    ``multiprocessing.resource_sharer`` thread hands over on request. When Ctrl-C stops the run
    between its request and the handover, that thread sees the connection close and would print
    a traceback under the run's one-line message. The run has abandoned that chunk; nothing is
    lost. Every other error is printed as Python would.
    """
    if issubclass(kind, EOFError | ConnectionError):
        return
    sys.__excepthook__(kind, error, tb)
