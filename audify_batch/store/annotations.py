"""Reviewers' verdicts on segments: the ``annotations`` table under OUT, append-only.

A verdict says whether a label is present in a segment (``present``: the model's label is right,
or the reviewer names another one; ``absent``: the label is wrong). Verdicts are never edited or
deleted: a later verdict on the same segment and label supersedes the earlier one in the
``annotations`` view (``annotation_history`` keeps them all).

Each ``AnnotationWriter.append`` writes one Parquet file under a name no other writer can take
(time stamp plus a random suffix), atomically (rename on local disk, one PUT on object stores),
and returns only once it is there: what was acknowledged survives ``kill -9`` of the writer, and
two writers (two browser tabs' servers, say) can never overwrite or delete each other's files.
"""

from __future__ import annotations

import posixpath
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pyarrow as pa
from fsspec.core import url_to_fs

from audify_batch.store import schema as S
from audify_batch.store.sink import write_parquet_atomic

ANNOTATIONS = "annotations"  # folder under OUT
ANNOTATION_ID = "annotation_id"
SEGMENT_ID = "segment_id"
LABEL = "label"
VERDICT = "verdict"
ANNOTATOR = "annotator"
ANNOTATED_AT = "annotated_at"
MODEL = "model"  # '<name>-<version>' of the model whose output was reviewed

MAX_LABEL_CHARS = 80
MAX_ANNOTATOR_CHARS = 64
MAX_ROWS_PER_APPEND = 1000
_LABEL_TEXT = re.compile(r"[^\x00-\x1f\x7f]+")  # printable: no control characters
_SEGMENT_ID = re.compile(r"([0-9a-f]{16}):(\d{1,9})")


class Verdict(StrEnum):
    PRESENT = "present"  # the label is in the segment
    ABSENT = "absent"  # it is not


ANNOTATIONS_SCHEMA = pa.schema(
    [
        pa.field(ANNOTATION_ID, pa.string(), nullable=False),
        pa.field(MODEL, pa.string(), nullable=False),
        pa.field(S.RECORDING_ID, pa.string(), nullable=False),
        pa.field(S.SEGMENT_INDEX, pa.int32(), nullable=False),
        pa.field(S.URI, pa.string(), nullable=False),
        pa.field(S.START_S, pa.float64(), nullable=False),
        pa.field(S.END_S, pa.float64(), nullable=False),
        pa.field(LABEL, pa.string(), nullable=False),
        pa.field(VERDICT, pa.string(), nullable=False),
        pa.field(ANNOTATOR, pa.string(), nullable=False),
        pa.field(ANNOTATED_AT, pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


def parse_segment_id(segment_id: str) -> tuple[str, int]:
    """``RECORDING_ID:SEGMENT_INDEX`` (as ``audify explain --segment`` takes it) -> its two parts."""
    match = _SEGMENT_ID.fullmatch(segment_id)
    if match is None:
        raise ValueError(f"a segment id is RECORDING_ID:SEGMENT_INDEX (16 hex digits), got {segment_id!r}")
    return match.group(1), int(match.group(2))


def clean_label(label: str) -> str:
    """A label as stored: stripped, 1..80 printable characters (a free-text new class is fine)."""
    text = label.strip()
    if not text or len(text) > MAX_LABEL_CHARS or not _LABEL_TEXT.fullmatch(text):
        raise ValueError(f"a label is 1 to {MAX_LABEL_CHARS} printable characters, got {label!r}")
    return text


@dataclass(frozen=True)
class Annotation:
    """One verdict: is ``label`` present in segment ``segment_id`` of ``model``'s output?"""

    model: str
    segment_id: str
    uri: str
    start_s: float
    end_s: float
    label: str
    verdict: Verdict
    annotator: str = "reviewer"
    annotated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    annotation_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        parse_segment_id(self.segment_id)
        if self.label != clean_label(self.label):
            raise ValueError(f"label {self.label!r}: strip it first (clean_label)")
        if not isinstance(self.verdict, Verdict):
            raise ValueError(f"verdict must be one of {[v.value for v in Verdict]}, got {self.verdict!r}")
        if not 0 < len(self.annotator) <= MAX_ANNOTATOR_CHARS or not _LABEL_TEXT.fullmatch(self.annotator):
            raise ValueError(f"annotator is 1 to {MAX_ANNOTATOR_CHARS} printable characters")
        if not 0.0 <= self.start_s < self.end_s:
            raise ValueError(f"a segment spans 0 <= start_s < end_s, got {self.start_s}..{self.end_s}")
        if not self.model or not self.uri:
            raise ValueError("an annotation names its model and recording uri")


def annotations_table(annotations: Sequence[Annotation]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in ANNOTATIONS_SCHEMA.names}
    for a in annotations:
        recording_id, index = parse_segment_id(a.segment_id)
        row = {
            ANNOTATION_ID: a.annotation_id,
            MODEL: a.model,
            S.RECORDING_ID: recording_id,
            S.SEGMENT_INDEX: index,
            S.URI: a.uri,
            S.START_S: a.start_s,
            S.END_S: a.end_s,
            LABEL: a.label,
            VERDICT: a.verdict.value,
            ANNOTATOR: a.annotator,
            ANNOTATED_AT: a.annotated_at,
        }
        for name, value in row.items():
            columns[name].append(value)
    return pa.table(columns, schema=ANNOTATIONS_SCHEMA)


class AnnotationWriter:
    """Appends verdicts under ``OUT/annotations/``; one file per call, acknowledged once written."""

    def __init__(self, out: str, storage_options: dict[str, Any] | None = None) -> None:
        self.fs, root = url_to_fs(out, **(storage_options or {}))
        self.folder = posixpath.join(root, ANNOTATIONS)
        self._lock = threading.Lock()  # one file at a time from this process

    def append(self, annotations: Sequence[Annotation]) -> str:
        """Write ``annotations`` as one new part; returns its path once it is durable under OUT."""
        if not annotations:
            raise ValueError("nothing to append")
        if len(annotations) > MAX_ROWS_PER_APPEND:
            raise ValueError(f"at most {MAX_ROWS_PER_APPEND} annotations per append, got {len(annotations)}")
        table = annotations_table(annotations)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = posixpath.join(self.folder, f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet")
        with self._lock:
            write_parquet_atomic(self.fs, table, path)
        return path
