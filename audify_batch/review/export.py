"""``audify export``: the detections (or merged events) of one model in OUT, as files other tools open.

Raven Pro and Audacity get one file per recording, R and pandas one tidy CSV (the formats are in
``export_formats``). What is exported is the ``detections`` view (``sql/export_detections.sql``),
or the events of ``sql/events.sql`` with ``events`` (``sql/export_events.sql`` runs that file's
text for every recording at once); OUT may be local or ``s3://``, the destination is local.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from audify_batch.review.export_formats import (
    ID_CHARS,
    Detection,
    audacity_labels,
    audacity_name,
    raven_name,
    raven_table,
    tidy_csv,
)
from audify_batch.store.query import connect, fetch_file, subquery

FORMATS = ("raven", "audacity", "csv")
DEFAULT_DEST = Path("audify-export")
# What the files of each format are called in the summary line (singular, plural).
FILE_NOUNS = {
    "raven": ("Raven selection table", "Raven selection tables"),
    "audacity": ("Audacity label track", "Audacity label tracks"),
    "csv": ("CSV file", "CSV files"),
}


@dataclass(frozen=True)
class ExportRequest:
    """What to export from OUT, in which format, to which local folder."""

    out: str
    format: str
    dest: Path = DEFAULT_DEST
    model: str | None = None  # '<name>-<version>'; None: the model of the latest run
    label: str | None = None
    min_score: float | None = None
    events: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown export format {self.format!r}: one of {', '.join(FORMATS)}")
        if self.min_score is not None and not (0.0 <= self.min_score <= 1.0):  # NaN fails too
            raise ValueError(f"--min-score must be a number from 0 to 1, got {self.min_score}")
        if self.label is not None and not self.label.strip():
            raise ValueError("--label must not be empty")


@dataclass(frozen=True)
class ExportResult:
    model: str
    n_rows: int  # detections, or events
    files: tuple[Path, ...]

    def summary(self, request: ExportRequest) -> str:
        """One line: how many files of which kind went where (or that nothing was written, and why)."""
        rows = "events" if request.events else "detections"
        if not self.files:
            return f"no {rows} of model {self.model} in {request.out}{_filter_text(request)}: nothing written"
        singular, plural = FILE_NOUNS[request.format]
        noun = singular if len(self.files) == 1 else plural
        return (
            f"wrote {len(self.files)} {noun} ({self.n_rows} {rows} of model {self.model}) to {request.dest}"
        )


def _filter_text(request: ExportRequest) -> str:
    parts = [f"label {request.label!r}"] if request.label is not None else []
    parts += [f"score >= {request.min_score:g}"] if request.min_score is not None else []
    return f" with {' and '.join(parts)}" if parts else ""


def resolve_model(con: duckdb.DuckDBPyConnection, model: str | None) -> str:
    """``model`` when OUT has it; None: the model of the latest run (as ``audify report`` picks it)."""
    known = [row[0] for row in fetch_file(con, "export_models").rows]
    if model is None:
        latest = fetch_file(con, "report_latest_model").rows
        if not latest:
            known_text = ", ".join(known) or "none"
            raise ValueError(f"no finished run in OUT to take the model from: give --model ({known_text})")
        return str(latest[0][0])
    if model not in known:
        raise ValueError(f"no model {model!r} in OUT: it has {', '.join(known) or 'none'}")
    return model


def read_detections(
    con: duckdb.DuckDBPyConnection,
    model: str,
    label: str | None = None,
    min_score: float | None = None,
    events: bool = False,
) -> list[Detection]:
    """The detections (or events) of ``model`` that pass the filters, by uri and time."""
    params = {"model": model, "label": label, "min_score": min_score}
    if events:
        result = fetch_file(con, "export_events", {**params, "events_sql": subquery("events"), "uri": None})
    else:
        result = fetch_file(con, "export_detections", params)
    return [
        Detection(
            uri=row["uri"],
            recording_id=row["recording_id"],
            start_s=float(row["start_s"]),
            end_s=float(row["end_s"]),
            label=row["label"],
            score=float(row["score"]),
            model=row["model"],
            sample_rate_hz=int(row["sample_rate_hz"]),
            segment_index=None if events else int(row["segment_index"]),
            n_segments=int(row["n_segments"]) if events else 1,
        )
        for row in result.records()
    ]


def by_recording(detections: Sequence[Detection]) -> dict[str, list[Detection]]:
    """recording_id -> its detections, in the order given."""
    groups: dict[str, list[Detection]] = {}
    for detection in detections:
        groups.setdefault(detection.recording_id, []).append(detection)
    return groups


def per_recording_files(
    detections: Sequence[Detection],
    name: Callable[[str, str, int], str],
    text: Callable[[Sequence[Detection]], str],
) -> dict[str, str]:
    """File name -> content, one file per recording (named with 8 characters of its id, or the whole
    id when two recordings of one stem have ids that start alike)."""
    groups = by_recording(detections)
    files = {name(rows[0].uri, rid, ID_CHARS): text(rows) for rid, rows in groups.items()}
    if len(files) < len(groups):
        files = {name(rows[0].uri, rid, len(rid)): text(rows) for rid, rows in groups.items()}
    return files


def export_files(detections: Sequence[Detection], format_name: str, events: bool = False) -> dict[str, str]:
    """File name -> content of an export in ``format_name``; nothing for no detections."""
    if not detections:
        return {}
    if format_name == "raven":
        return per_recording_files(detections, raven_name, raven_table)
    if format_name == "audacity":
        return per_recording_files(detections, audacity_name, audacity_labels)
    return {"events.csv" if events else "detections.csv": tidy_csv(detections, events)}


def write_export(files: dict[str, str], dest: Path) -> tuple[Path, ...]:
    """Write each file under ``dest`` (created); each appears whole (written aside, then renamed)."""
    if files:
        dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        path = dest / name
        partial = path.with_name(f".{name}.partial")
        with open(partial, "w", encoding="utf-8", newline="") as handle:
            handle.write(content)
        os.replace(partial, path)
        written.append(path)
    return tuple(written)


def export(request: ExportRequest) -> ExportResult:
    """Query OUT and write the export under ``request.dest`` (nothing when nothing passes the filters)."""
    con = connect(request.out)
    try:
        model = resolve_model(con, request.model)
        detections = read_detections(con, model, request.label, request.min_score, request.events)
    finally:
        con.close()
    files = write_export(export_files(detections, request.format, request.events), request.dest)
    return ExportResult(model, len(detections), files)
