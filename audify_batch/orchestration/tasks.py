"""Prefect tasks the flows share: discovery, the labeling task, and the GPU gate around model steps."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.concurrency.sync import concurrency

from audify_batch.ingest.sources import discover_all
from audify_batch.orchestration.artifacts import PROGRESS_KEY, ProgressPublisher
from audify_batch.orchestration.storage import storage_options_from_block
from audify_batch.records import RunSummary
from audify_batch.run.pipeline import LabelConfig, ModelGate, label_archive


@task(retries=3, retry_delay_seconds=[2, 10, 30])
def count_recordings(source: str | list[str], storage_block: str | None = None) -> int:
    """Discovery is I/O: retried. Returns only a count (the label task discovers again)."""
    sources = source if isinstance(source, str) else tuple(source)
    return len(discover_all(sources, storage_options_from_block(storage_block)))


def gpu_gate(limit_name: str | None) -> ModelGate:
    """Hold one slot of the global concurrency limit ``limit_name`` around each model step."""
    if not limit_name:
        return nullcontext

    def gate() -> AbstractContextManager[object]:
        return concurrency(limit_name, occupy=1, strict=True)

    return gate


@task
def label_task(config: LabelConfig, gpu_limit: str | None = None) -> RunSummary:
    artifact_id = create_progress_artifact(0.0, key=PROGRESS_KEY, description="recordings labeled")
    summary = label_archive(config, progress=ProgressPublisher(artifact_id), model_gate=gpu_gate(gpu_limit))
    update_progress_artifact(artifact_id, 100.0)
    return summary
