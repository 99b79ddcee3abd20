"""Prefect flow: split a large archive into shards and label them in parallel on a work pool.

The parent takes the lease on OUT under its batch id (the shards join it; any
other run on OUT fails as busy), cleans the output, lists SOURCE once into a manifest
(``OUT/manifests/<batch_id>.parquet``, each recording with its shard), starts
one run of the shard deployment (``label-archive/label-shard``) per shard with
``run_deployment``, each labeling only its slice of the manifest (no shard
lists SOURCE), waits, re-runs only the shards that failed (each skips what its
failed attempt already committed), cleans again and publishes one summary over
all shards. Shards are disjoint by a stable hash of the URI, so the result is
one dataset with no duplicates, equal to a single-process run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, cast

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import flow_run
from pydantic import Field

from audify_batch.orchestration.artifacts import publish_summary
from audify_batch.orchestration.storage import storage_options_from_block
from audify_batch.run.batches import (
    LaunchShards,
    ShardResult,
    clean_output,
    failed_shards,
    run_shards,
    summarize_batch,
)
from audify_batch.run.config import RuntimeConfig
from audify_batch.run.manifest import Manifest, create_manifest
from audify_batch.run.shards import Shard, all_shards
from audify_batch.store.lease import hold_lease

SHARD_DEPLOYMENT = "label-archive/label-shard"


@task(retries=3, retry_delay_seconds=[2, 10, 30])
def clean_task(out: str, model_dir: str, batch_id: str, storage_block: str | None = None) -> int:
    """Debris of dead runs, under the batch's lease (the files of its live shards are spared)."""
    return clean_output(out, model_dir, storage_options_from_block(storage_block), batch_id)


@task(retries=3, retry_delay_seconds=[2, 10, 30])
def manifest_task(
    source: str, out: str, batch_id: str, shards: int, storage_block: str | None = None
) -> Manifest:
    """The fan-out's one listing of SOURCE, written under OUT for the shards (whole again on a retry)."""
    return create_manifest(source, out, batch_id, shards, storage_options_from_block(storage_block))


def wait_for_runs(run_ids: dict[Shard, Any], poll_s: float) -> dict[Shard, Any]:
    """Poll until every flow run is in a final state; returns each run's final state."""
    final: dict[Shard, Any] = {}
    with get_client(sync_client=True) as client:
        while len(final) < len(run_ids):
            for shard, run_id in run_ids.items():
                if shard not in final:
                    state = client.read_flow_run(run_id).state
                    if state is not None and state.is_final():
                        final[shard] = state
            if len(final) < len(run_ids):
                time.sleep(poll_s)
    return final


def deployment_launcher(
    deployment: str, parameters: Callable[[Shard], dict[str, Any]], poll_s: float
) -> LaunchShards:
    """Start one deployment run per shard (at once), then wait for all of them."""

    def launch(pending: list[Shard], attempt: int) -> list[ShardResult]:
        runs = {}
        for shard in pending:
            name = f"shard-{shard.name}-try-{attempt}"
            started = run_deployment(deployment, parameters=parameters(shard), timeout=0, flow_run_name=name)
            runs[shard] = cast(FlowRun, started).id  # sync caller: async_dispatch returns the FlowRun
        states = wait_for_runs(runs, poll_s)
        return [ShardResult(s, attempt, states[s].is_completed(), states[s].name) for s in pending]

    return launch


@flow(name="label-fanout", log_prints=True)
def fanout_flow(
    source: str,
    out: str,
    shards: Annotated[int, Field(ge=1, le=256)] = 4,
    model_dir: str = RuntimeConfig.model_dir,
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 2,
    shard_deployment: str = SHARD_DEPLOYMENT,
    workers: Annotated[int | None, Field(ge=0, le=64)] = None,
    gpu_limit: str | None = None,
    poll_s: Annotated[float, Field(gt=0)] = 2.0,
    storage_block: str | None = None,
) -> dict[str, Any]:
    """Label SOURCE into OUT as SHARDS parallel deployment runs; one combined summary.

    The flow holds the lease on OUT under its batch id from the first clean-up to the last
    (``store/lease.py``): the shards join it, any other run on OUT fails with ``OutputBusyError``.
    """
    logger = get_run_logger()
    started = time.perf_counter()
    batch_id = str(flow_run.get_id() or f"local-{time.time_ns()}")
    options = storage_options_from_block(storage_block)
    with hold_lease(out, batch_id, options, batch_id=batch_id):
        removed = clean_task(out, model_dir, batch_id, storage_block)
        logger.info("removed %d debris files before fan-out", removed)
        manifest = manifest_task(source, out, batch_id, shards, storage_block)
        logger.info("listed %d recordings once into %s", manifest.n_recordings, manifest.uri)

        def parameters(shard: Shard) -> dict[str, Any]:
            return dict(
                source=source,
                out=out,
                model_dir=model_dir,
                workers=workers,
                gpu_limit=gpu_limit,
                shard_index=shard.index,
                shard_count=shard.count,
                batch_id=batch_id,
                manifest=manifest.uri,
                storage_block=storage_block,
            )

        history = run_shards(
            all_shards(shards), deployment_launcher(shard_deployment, parameters, poll_s), max_attempts
        )
        for result in history:
            logger.info("shard %s try %d: %s", result.shard.name, result.attempt, result.detail)
        clean_task(out, model_dir, batch_id, storage_block)
    summary = summarize_batch(out, model_dir, batch_id, time.perf_counter() - started, options)
    publish_summary(summary, f"Fan-out {batch_id} over {shards} shards", options)
    failed = failed_shards(history)
    if failed:
        names = ", ".join(s.name for s in failed)
        raise RuntimeError(f"shards {names} failed {max_attempts} times; the others are committed")
    return {**asdict(summary), "realtime_factor": summary.realtime_factor, "shards": shards}
