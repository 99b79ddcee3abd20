"""The export formats of ``audify export``: Raven Pro selection tables, Audacity label tracks, tidy CSV.

Pure text from :class:`Detection` records: no DuckDB, no files (``export.py`` queries and writes).
Times are seconds with 6 decimals, scores 6 decimals (2 in an Audacity label's text).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

# Raven's standard columns, in Raven's order, then ours.
RAVEN_COLUMNS = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Label",
    "Score",
    "Begin Path",
    "File Offset (s)",
    "Segment",
)
RAVEN_VIEW = "Spectrogram 1"
DETECTION_COLUMNS = (
    "uri",
    "recording_id",
    "segment_index",
    "start_s",
    "end_s",
    "label",
    "score",
    "model",
    "segment_id",
)
EVENT_COLUMNS = ("uri", "recording_id", "start_s", "end_s", "label", "score", "n_segments", "model")
ID_CHARS = 8  # of the recording id in a per-recording file name


@dataclass(frozen=True)
class Detection:
    """One exported row: a segment's detected label, or a merged event (``segment_index`` None)."""

    uri: str
    recording_id: str
    start_s: float
    end_s: float
    label: str
    score: float
    model: str
    sample_rate_hz: int
    segment_index: int | None = None
    n_segments: int = 1

    @property
    def segment_id(self) -> str:
        """``RECORDING_ID:SEGMENT_INDEX`` (what ``audify explain --segment`` takes); empty for an event."""
        return "" if self.segment_index is None else f"{self.recording_id}:{self.segment_index}"


def seconds(value: float) -> str:
    return f"{value:.6f}"


def score_text(value: float) -> str:
    return f"{value:.6f}"


def _field(text: str) -> str:
    """A text cell of a tab-separated line: no tab or line break inside."""
    return " ".join(text.replace("\t", " ").splitlines())


def time_order(detections: Iterable[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda d: (d.start_s, d.end_s, d.label, d.score))


def recording_stem(uri: str) -> str:
    """The file name of a recording without its extension (``/a/b/site 3.flac`` -> ``site 3``)."""
    return PurePosixPath(uri.removeprefix("file://")).stem or "recording"


def recording_path(uri: str) -> str:
    """Where the recording is, as Raven's Begin Path shows it: a local path, or the URL."""
    return uri.removeprefix("file://")


def raven_name(uri: str, recording_id: str, id_chars: int = ID_CHARS) -> str:
    """Raven's naming plus an id (two recordings of one stem): ``<stem>.<id>.Table.1.selections.txt``."""
    return f"{recording_stem(uri)}.{recording_id[:id_chars]}.Table.1.selections.txt"


def audacity_name(uri: str, recording_id: str, id_chars: int = ID_CHARS) -> str:
    return f"{recording_stem(uri)}.{recording_id[:id_chars]}.labels.txt"


def raven_table(detections: Sequence[Detection]) -> str:
    """A Raven Pro selection table of one recording's detections, numbered from 1 in time order."""
    lines = ["\t".join(RAVEN_COLUMNS)]
    for selection, d in enumerate(time_order(detections), start=1):
        cells = (
            str(selection),
            RAVEN_VIEW,
            "1",
            seconds(d.start_s),
            seconds(d.end_s),
            "0",
            f"{d.sample_rate_hz / 2:g}",
            _field(d.label),
            score_text(d.score),
            _field(recording_path(d.uri)),
            seconds(d.start_s),
            d.segment_id,
        )
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def audacity_labels(detections: Sequence[Detection]) -> str:
    """An Audacity label track of one recording: ``start<TAB>end<TAB>label score`` lines, no header."""
    lines = [
        f"{seconds(d.start_s)}\t{seconds(d.end_s)}\t{_field(d.label)} {d.score:.2f}"
        for d in time_order(detections)
    ]
    return "".join(line + "\n" for line in lines)


def _csv_row(d: Detection, events: bool) -> list[object]:
    if events:
        start, end, score = seconds(d.start_s), seconds(d.end_s), score_text(d.score)
        return [d.uri, d.recording_id, start, end, d.label, score, d.n_segments, d.model]
    return [
        d.uri,
        d.recording_id,
        d.segment_index,
        seconds(d.start_s),
        seconds(d.end_s),
        d.label,
        score_text(d.score),
        d.model,
        d.segment_id,
    ]


def tidy_csv(detections: Iterable[Detection], events: bool = False) -> str:
    """One CSV (RFC 4180 quoting, CRLF line ends) of every detection, or every event with ``events``."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(EVENT_COLUMNS if events else DETECTION_COLUMNS)
    writer.writerows(_csv_row(d, events) for d in detections)
    return buffer.getvalue()
