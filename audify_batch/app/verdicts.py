"""A reviewer's verdict as the desk's pages post it, checked, and the annotations it becomes.

The page sends only what the reviewer decided (segment id, model, label, verdict, maybe another
label); where the segment lies (uri, start, end) is looked up in OUT by the server, and the
annotator is the server's ``--annotator``.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from audify_batch.app.data import Segment
from audify_batch.store.annotations import (
    MAX_LABEL_CHARS,
    Annotation,
    Verdict,
    clean_label,
    parse_segment_id,
)

MAX_SEGMENT_ID_CHARS = 26  # 16 hex digits, ':', at most 9 digits
MAX_MODEL_CHARS = 200
# A label may come with surrounding blanks (stripped); the stored label is at most MAX_LABEL_CHARS.
MAX_LABEL_INPUT_CHARS = 2 * MAX_LABEL_CHARS


class VerdictRequest(BaseModel):
    """``label`` is (``present``) or is not (``absent``) in the segment; ``other_label``: what is
    there instead (with ``absent`` only): one more verdict, ``present``, for it."""

    model_config = ConfigDict(extra="forbid")

    segment_id: str = Field(min_length=18, max_length=MAX_SEGMENT_ID_CHARS)
    model: str = Field(min_length=1, max_length=MAX_MODEL_CHARS)
    label: str = Field(min_length=1, max_length=MAX_LABEL_INPUT_CHARS)
    verdict: Verdict
    other_label: str | None = Field(default=None, min_length=1, max_length=MAX_LABEL_INPUT_CHARS)

    @field_validator("segment_id")
    @classmethod
    def _segment_id(cls, value: str) -> str:
        parse_segment_id(value)
        return value

    @field_validator("label", "other_label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        return None if value is None else clean_label(value)

    @model_validator(mode="after")
    def _other(self) -> Self:
        if self.other_label is not None:
            if self.verdict is not Verdict.ABSENT:
                raise ValueError("other_label goes with verdict 'absent' (the shown label is wrong)")
            if self.other_label == self.label:
                raise ValueError("other_label must differ from label")
        return self


def annotations_for(request: VerdictRequest, segment: Segment, annotator: str) -> list[Annotation]:
    """The annotations of one request, for ``segment`` as OUT has it (one append, one file)."""

    def one(label: str, verdict: Verdict) -> Annotation:
        return Annotation(
            model=segment.model,
            segment_id=segment.segment_id,
            uri=segment.uri,
            start_s=segment.start_s,
            end_s=segment.end_s,
            label=label,
            verdict=verdict,
            annotator=annotator,
        )

    found = [one(request.label, request.verdict)]
    if request.other_label is not None:
        found.append(one(request.other_label, Verdict.PRESENT))
    return found
