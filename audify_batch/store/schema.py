"""The output schema, defined once: column names, pyarrow schemas, layout under OUT.

Layout (hive partitioning, one folder per model so versions never mix):

    OUT/segments/model=<name>-<version>/part-<run_id>-<seq>.parquet
    OUT/recordings/model=<name>-<version>/part-<run_id>-<seq>.parquet
    OUT/runs/model=<name>-<version>/run-<run_id>-<nn>.parquet   (one file per run state)
    OUT/manifests/<batch_id>.parquet   (a fan-out's one listing of SOURCE, each row with its shard)
    OUT/_lease.json   (the lease of the one writer, or fan-out batch, now writing to OUT: store/lease.py)

A recordings part is the commit record of the segments part with the same
name: a segments part without one is debris of an interrupted run and is
removed before the next run starts.
"""

from __future__ import annotations

import re

import pyarrow as pa

from audify_batch.records import RecordingStatus, RunStatus

SEGMENTS = "segments"
RECORDINGS = "recordings"
RUNS = "runs"
MANIFESTS = "manifests"
MODEL_PARTITION = "model"
LEASE_FILE = "_lease.json"  # under OUT: who writes there now (store/lease.py)

# Shared columns
RECORDING_ID = "recording_id"
URI = "uri"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
CONFIG_HASH = "config_hash"
RUN_ID = "run_id"

# segments
SEGMENT_INDEX = "segment_index"
START_S = "start_s"
END_S = "end_s"
START_SAMPLE = "start_sample"
END_SAMPLE = "end_sample"
LABELS = "labels"
CONFIDENCES = "confidences"
EMBEDDING = "embedding"
# Null where the model has no such output (1.x models: no thresholds, no AudioSet head).
# `detected`: labels past their class threshold where the known-sound gate lets any; empty: nothing known.
DETECTED = "detected"
AUDIOSET_LABELS = "audioset_labels"  # top-K of the second vocabulary (AudioSet), best first
AUDIOSET_SCORES = "audioset_scores"
# The same vector as `embedding`, as little-endian float16 in one fixed-width binary value (2 bytes a
# dimension), derived by the writer (store/sink.py): what custom heads read (review/head_apply.py),
# because Parquet decodes a fixed-width value an order of magnitude faster than a list of floats.
# Parts written before it existed (or with `label --no-float16-copy`) lack it; readers fall back to
# `embedding`.
EMBEDDING_F16 = "embedding_f16"

# recordings
SIZE_BYTES = "size_bytes"
MTIME_S = "mtime_s"
FINGERPRINT = "fingerprint"
SAMPLE_RATE_HZ = "sample_rate_hz"
CHANNELS = "channels"
DURATION_S = "duration_s"
N_SEGMENTS = "n_segments"
STATUS = "status"
ERROR = "error"
FINISHED_AT = "finished_at"

# recording status values (the enum lives with the shared records)
STATUS_LABELED = RecordingStatus.LABELED
STATUS_FAILED = RecordingStatus.FAILED
STATUS_SKIPPED = RecordingStatus.SKIPPED

# runs
STARTED_AT = "started_at"
RUN_STATUS = "status"
CONFIG_JSON = "config_json"
N_RECORDINGS = "n_recordings"
N_LABELED = "n_labeled"
N_FAILED = "n_failed"
N_SKIPPED = "n_skipped"
AUDIO_S = "audio_s"
WALL_S = "wall_s"

RUN_RUNNING = RunStatus.RUNNING
RUN_COMPLETED = RunStatus.COMPLETED
RUN_FAILED = RunStatus.FAILED
RUN_INTERRUPTED = RunStatus.INTERRUPTED

_TIMESTAMP = pa.timestamp("us", tz="UTC")


def segments_schema(embedding_dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field(RECORDING_ID, pa.string(), nullable=False),
            pa.field(URI, pa.string(), nullable=False),
            pa.field(SEGMENT_INDEX, pa.int32(), nullable=False),
            pa.field(START_S, pa.float64(), nullable=False),
            pa.field(END_S, pa.float64(), nullable=False),
            pa.field(START_SAMPLE, pa.int64(), nullable=False),
            pa.field(END_SAMPLE, pa.int64(), nullable=False),
            pa.field(LABELS, pa.list_(pa.string()), nullable=False),
            pa.field(CONFIDENCES, pa.list_(pa.float32()), nullable=False),
            pa.field(EMBEDDING, pa.list_(pa.float32(), embedding_dim), nullable=False),
            pa.field(DETECTED, pa.list_(pa.string())),
            pa.field(AUDIOSET_LABELS, pa.list_(pa.string())),
            pa.field(AUDIOSET_SCORES, pa.list_(pa.float32())),
            pa.field(MODEL_NAME, pa.string(), nullable=False),
            pa.field(MODEL_VERSION, pa.string(), nullable=False),
            pa.field(CONFIG_HASH, pa.string(), nullable=False),
            pa.field(RUN_ID, pa.string(), nullable=False),
        ]
    )


def embedding_f16_field(embedding_dim: int) -> pa.Field:
    return pa.field(EMBEDDING_F16, pa.binary(2 * embedding_dim), nullable=False)


RECORDINGS_SCHEMA = pa.schema(
    [
        pa.field(RECORDING_ID, pa.string(), nullable=False),
        pa.field(URI, pa.string(), nullable=False),
        pa.field(SIZE_BYTES, pa.int64(), nullable=False),
        pa.field(MTIME_S, pa.float64(), nullable=False),
        pa.field(FINGERPRINT, pa.string()),
        pa.field(SAMPLE_RATE_HZ, pa.int32()),
        pa.field(CHANNELS, pa.int32()),
        pa.field(DURATION_S, pa.float64()),
        pa.field(N_SEGMENTS, pa.int32(), nullable=False),
        pa.field(STATUS, pa.string(), nullable=False),
        pa.field(ERROR, pa.string()),
        pa.field(MODEL_NAME, pa.string(), nullable=False),
        pa.field(MODEL_VERSION, pa.string(), nullable=False),
        pa.field(CONFIG_HASH, pa.string(), nullable=False),
        pa.field(RUN_ID, pa.string(), nullable=False),
        pa.field(FINISHED_AT, _TIMESTAMP, nullable=False),
    ]
)

RUNS_SCHEMA = pa.schema(
    [
        pa.field(RUN_ID, pa.string(), nullable=False),
        pa.field(STARTED_AT, _TIMESTAMP, nullable=False),
        pa.field(FINISHED_AT, _TIMESTAMP),
        pa.field(RUN_STATUS, pa.string(), nullable=False),
        pa.field(CONFIG_JSON, pa.string(), nullable=False),
        pa.field(CONFIG_HASH, pa.string(), nullable=False),
        pa.field(MODEL_NAME, pa.string(), nullable=False),
        pa.field(MODEL_VERSION, pa.string(), nullable=False),
        pa.field(N_RECORDINGS, pa.int64(), nullable=False),
        pa.field(N_LABELED, pa.int64(), nullable=False),
        pa.field(N_FAILED, pa.int64(), nullable=False),
        pa.field(N_SKIPPED, pa.int64(), nullable=False),
        pa.field(N_SEGMENTS, pa.int64(), nullable=False),
        pa.field(AUDIO_S, pa.float64(), nullable=False),
        pa.field(WALL_S, pa.float64()),
    ]
)


def model_label(model_name: str, model_version: str) -> str:
    """The ``model`` value of the views, e.g. ``audify-esc50-resnet-1.0.0``."""
    return f"{model_name}-{model_version}"


def model_partition(model_name: str, model_version: str) -> str:
    """Folder name of one model's partition, e.g. ``model=audify-esc50-resnet-1.0.0``."""
    return f"{MODEL_PARTITION}={model_label(model_name, model_version)}"


# manifests: one row per recording found by a fan-out's listing, in the shard that labels it.
# The shard count is file metadata (every row of one manifest is split the same way).
SHARD_INDEX = "shard_index"
MANIFEST_SHARD_COUNT_KEY = b"audify.shard_count"

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field(URI, pa.string(), nullable=False),
        pa.field(SIZE_BYTES, pa.int64(), nullable=False),
        pa.field(MTIME_S, pa.float64(), nullable=False),
        pa.field(RECORDING_ID, pa.string(), nullable=False),
        pa.field(ERROR, pa.string()),
        pa.field(SHARD_INDEX, pa.int32(), nullable=False),
    ]
)
_BATCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def manifest_path(batch_id: str) -> str:
    """Path of a fan-out's manifest relative to OUT: ``manifests/<batch_id>.parquet``."""
    if not _BATCH_ID.fullmatch(batch_id):
        raise ValueError(f"batch_id must be letters, digits, '.', '_' or '-' (a file name), got {batch_id!r}")
    return f"{MANIFESTS}/{batch_id}.parquet"
