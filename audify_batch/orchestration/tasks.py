"""Prefect tasks the flows share: discovery, the labeling task, and the GPU gate around model steps."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import cast
from uuid import UUID

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.concurrency.sync import concurrency

from audify_batch.orchestration.artifacts import PROGRESS_KEY, ProgressPublisher
from audify_batch.records import RunSummary
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import ModelGate, find_recordings, label_archive


@task(retries=3, retry_delay_seconds=[2, 10, 30])
def count_recordings(config: LabelConfig) -> int:
    """How many recordings this run is about; I/O, so retried. Returns only a count.

    With a manifest it reads this shard's slice and never lists the source; without one it
    discovers the source (and the label task discovers it again).
    """
    return len(find_recordings(config))


def gpu_gate(limit_name: str | None) -> ModelGate:
    """Hold one slot of the global concurrency limit ``limit_name`` around each model step."""
    if not limit_name:
        return nullcontext

    def gate() -> AbstractContextManager[object]:
        return concurrency(limit_name, occupy=1, strict=True)

    return gate


@task
def label_task(config: LabelConfig, gpu_limit: str | None = None) -> RunSummary:
    # async_dispatch types the result as "UUID | coroutine"; this task is sync, so it is the UUID.
    artifact_id = cast(
        UUID, create_progress_artifact(0.0, key=PROGRESS_KEY, description="recordings labeled")
    )
    summary = label_archive(config, progress=ProgressPublisher(artifact_id), model_gate=gpu_gate(gpu_limit))
    update_progress_artifact(artifact_id, 100.0)
    return summary
