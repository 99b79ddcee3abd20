"""The backfill request: one typed, validated parameter for the ``label-backfill`` flow.

Prefect checks it against the deployment's schema when a run is created and
again when the flow starts, so a bad parameter fails before anything is read
or written.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from audify_batch.ingest.segments import SegmentingConfig
from audify_batch.model.checkpoint import CheckpointError, read_card
from audify_batch.orchestration.storage import storage_options_from_block
from audify_batch.run.config import LabelConfig, OutputConfig, RuntimeConfig


class BackfillRequest(BaseModel):
    """What to backfill: exactly one of ``prefix`` and ``uris``, optionally a time range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    out: str = Field(min_length=1, description="output root (local folder or s3://bucket/prefix)")
    prefix: str | None = Field(None, description="folder, prefix or glob of recordings")
    uris: list[str] | None = Field(None, description="explicit recordings (or list files)")
    modified_after: datetime | None = Field(None, description="only recordings modified at/after (with tz)")
    modified_before: datetime | None = Field(None, description="only recordings modified before (with tz)")
    model_dir: str = Field(RuntimeConfig.model_dir, description="model to label with (a checkpoint folder)")
    hop_s: float | None = Field(SegmentingConfig.hop_s, gt=0, description="hop (default: no overlap)")
    top_k: int = Field(OutputConfig.top_k, ge=1, description="labels kept per segment")
    batch_size: int = Field(RuntimeConfig.batch_size, ge=1, le=4096)
    workers: int | None = Field(None, ge=0, le=64)
    gpu_limit: str | None = Field(None, description="global concurrency limit held around model steps")
    storage_block: str | None = Field(None, description="Secret block with storage options (credentials)")

    @field_validator("modified_after", "modified_before")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2026-01-01T00:00:00Z)")
        return value

    @field_validator("model_dir")
    @classmethod
    def _model_exists(cls, value: str) -> str:
        try:
            read_card(Path(value))
        except (CheckpointError, OSError, ValueError) as error:
            raise ValueError(f"no usable model at {value}: {error}") from error
        return value

    @model_validator(mode="after")
    def _one_source(self) -> BackfillRequest:
        if (self.prefix is None) == (not self.uris):
            raise ValueError("give exactly one of prefix and uris")
        after, before = self.modified_after, self.modified_before
        if after and before and after >= before:
            raise ValueError("modified_after must be earlier than modified_before")
        return self

    def label_config(self) -> LabelConfig:
        source: str | tuple[str, ...] = self.prefix if self.prefix is not None else tuple(self.uris or ())
        return LabelConfig.of(
            source,
            self.out,
            storage_options_from_block(self.storage_block),
            model_dir=self.model_dir,
            hop_s=self.hop_s,
            top_k=self.top_k,
            batch_size=self.batch_size,
            workers=self.workers,
            modified_after_s=self.modified_after.timestamp() if self.modified_after else None,
            modified_before_s=self.modified_before.timestamp() if self.modified_before else None,
        )
