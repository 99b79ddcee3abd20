"""The configuration of one labeling run: small frozen parts composed into ``LabelConfig``.

Each default has one home, the part that owns the setting; the CLI, the flows
and the backfill request read their defaults from these classes. Each part
validates itself once, on construction, with ``ValueError``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from audify_batch.ingest.retry import RetryPolicy
from audify_batch.ingest.segments import SegmentingConfig
from audify_batch.model.inference import Precision
from audify_batch.run.shards import Shard

WORKER_START_METHODS = ("fork", "forkserver", "spawn")


@dataclass(frozen=True)
class SourceConfig:
    """Which recordings: a folder, glob, list file or file (or several), optionally a time range."""

    source: str | tuple[str, ...]
    modified_after_s: float | None = None  # only recordings modified at or after (POSIX seconds)
    modified_before_s: float | None = None  # ... and before

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("give a source: a folder, glob, list file or file")
        after, before = self.modified_after_s, self.modified_before_s
        if after is not None and before is not None and after >= before:
            raise ValueError("modified_after_s must be earlier than modified_before_s")

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,) if isinstance(self.source, str) else self.source


@dataclass(frozen=True)
class RuntimeConfig:
    """How the run goes: which model, batch size, decode workers, threads, device, precision, lease wait."""

    model_dir: str = "default"  # a shipped model's name (model/checkpoint.py MODEL_ALIASES) or a folder
    batch_size: int = 64
    workers: int | None = None  # DataLoader workers; None: chosen for the machine; 0: in the main process
    threads: int | None = None  # torch threads on CPU; None: all cores
    device: str = "auto"  # auto, cpu or cuda[:N]
    precision: Precision = Precision.AUTO
    worker_start: str | None = None  # fork, forkserver or spawn; None: fork unless threads run
    lease_wait_s: float = 0.0  # OUT held by another live run: wait this long for it, then fail
    # A calibrated thresholds file (audify calibrate): replaces the card's per-class thresholds of
    # the labels it names, for `detected`; None: the card's own.
    thresholds_file: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError("batch_size must be positive")
        if self.workers is not None and self.workers < 0:
            raise ValueError("workers must be >= 0 (0 decodes in the main process)")
        if self.threads is not None and self.threads <= 0:
            raise ValueError("threads must be positive")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device}")
        if self.lease_wait_s < 0:
            raise ValueError("lease_wait_s must be >= 0")
        if self.worker_start is not None and self.worker_start not in WORKER_START_METHODS:
            raise ValueError(f"worker_start must be fork, forkserver or spawn, got {self.worker_start}")


@dataclass(frozen=True)
class UsedRuntime:
    """What a run resolved ``RuntimeConfig`` to; its runs row records it under ``used`` in config_json."""

    device: str  # cpu, cuda or cuda:N
    precision: str  # fp32 or bf16, never auto
    workers: int  # DataLoader workers; 0: decoding in the main process
    torch_threads: int
    worker_start: str | None = None  # how the workers started (fork, forkserver, spawn); None: no workers
    freed_memory_kept: bool = False  # glibc kept freed activations for the next batch (model/cpu_memory.py)


@dataclass(frozen=True)
class RetryConfig:
    """Re-reads of a recording on transient storage errors, with doubling backoff."""

    read_attempts: int = 4
    retry_delay_s: float = 0.5  # first backoff; doubles per attempt, at most 16x

    def __post_init__(self) -> None:
        self.policy()

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.read_attempts, self.retry_delay_s, 16 * self.retry_delay_s)


@dataclass(frozen=True)
class ShardConfig:
    """This run labels shard ``index`` of ``count``; ``batch_id`` ties the shards of one fan-out."""

    index: int = 0
    count: int = 1
    batch_id: str | None = None
    manifest: str | None = None  # the fan-out's listing under OUT; None: list the source here

    def __post_init__(self) -> None:
        Shard(self.index, self.count)

    @property
    def shard(self) -> Shard:
        return Shard(self.index, self.count)


@dataclass(frozen=True)
class OutputConfig:
    """Where and what is written: OUT, the top-K kept per segment, how often parts are committed,
    and whether segments parts carry ``embedding_f16`` (the float16 copy of each embedding that
    custom heads read at memory speed: 2 bytes a dimension a segment; without it they read the
    float32 list, 5 to 8x slower). Layout only: it never changes the rows or the config hash."""

    out: str
    top_k: int = 5
    commit_every_segments: int = 20_000
    commit_every_s: float = 60.0
    float16_copy: bool = True

    def __post_init__(self) -> None:
        if not self.out:
            raise ValueError("give an output location (OUT)")
        if self.top_k <= 0:
            raise ValueError("top_k must be positive")
        if self.commit_every_segments <= 0 or self.commit_every_s <= 0:
            raise ValueError("commit_every_segments and commit_every_s must be positive")


_PARTS: dict[str, type] = {
    "source": SourceConfig,
    "output": OutputConfig,
    "segmenting": SegmentingConfig,
    "runtime": RuntimeConfig,
    "retry": RetryConfig,
    "shard": ShardConfig,
}
_SHARD_ALIASES = {"shard_index": "index", "shard_count": "count", "batch_id": "batch_id"}


@dataclass(frozen=True)
class LabelConfig:
    """Everything one labeling run needs, composed of the parts above."""

    source: SourceConfig
    output: OutputConfig
    segmenting: SegmentingConfig = field(default_factory=SegmentingConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    shard: ShardConfig = field(default_factory=ShardConfig)
    storage_options: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(
        cls,
        source: str | tuple[str, ...],
        out: str,
        storage_options: dict[str, Any] | None = None,
        **settings: Any,
    ) -> LabelConfig:
        """Build from flat setting names (CLI flags, flow parameters); each goes to its part.

        A setting left out (or ``None`` where the part's default is not ``None``)
        takes the part's default, so defaults live only in the part classes.
        """
        settings = {_SHARD_ALIASES.get(k, k): v for k, v in settings.items()}
        required: dict[type, dict[str, Any]] = {SourceConfig: {"source": source}, OutputConfig: {"out": out}}
        parts: dict[str, Any] = {}
        for name, part in _PARTS.items():
            given = dict(required.get(part, {}))
            for f in fields(part):
                if f.name in settings and (settings[f.name] is not None or f.default is None):
                    given[f.name] = settings.pop(f.name)
            parts[name] = part(**given)
        unknown = sorted(k for k, v in settings.items() if v is not None)
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        return cls(**parts, storage_options=storage_options)

    @property
    def out(self) -> str:
        return self.output.out

    def public_dict(self) -> dict[str, Any]:
        """The settings as recorded in the runs table (never storage options/secrets)."""
        data = asdict(self)
        data.pop("storage_options")
        data["source"]["source"] = list(self.source.sources)
        data["segmenting"]["last_window"] = self.segmenting.last_window.value
        data["runtime"]["precision"] = self.runtime.precision.value
        return data
