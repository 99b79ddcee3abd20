"""The page of one recording: its facts, a timeline of what is detected (inline SVG, each segment a
link to its page), its events and its segments."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from audify_batch.app.pages import Html, grid, layout, link, name_of, segment_url
from audify_batch.report.html import esc
from audify_batch.store.query import QueryResult

# matplotlib's tab20, as the run report colours its labels
PALETTE = (
    "#1f77b4",
    "#aec7e8",
    "#ff7f0e",
    "#ffbb78",
    "#2ca02c",
    "#98df8a",
    "#d62728",
    "#ff9896",
    "#9467bd",
    "#c5b0d5",
    "#8c564b",
    "#c49c94",
    "#e377c2",
    "#f7b6d2",
    "#7f7f7f",
    "#c7c7c7",
    "#bcbd22",
    "#dbdb8d",
    "#17becf",
    "#9edae5",
)
NOTHING = "(nothing known)"
SVG_WIDTH = 1000
SVG_ROW = 28
MAX_SEGMENT_ROWS = 500


def _detected(row: Mapping[str, Any]) -> str:
    """What the timeline shows for a segment: its first detected label, its top-1 without thresholds."""
    if row["detected"] is None:
        return str(row["label"])
    return str(row["detected"][0]) if row["detected"] else NOTHING


def timeline_svg(model: str, recording_id: str, rows: QueryResult, duration_s: float) -> str:
    """One strip: a rectangle per segment coloured by its detected label, opacity by confidence."""
    records = rows.records()
    counts = Counter(_detected(r) for r in records)
    colours = {label: PALETTE[i % len(PALETTE)] for i, (label, _) in enumerate(counts.most_common())}
    colours[NOTHING] = "#ffffff"
    scale = SVG_WIDTH / max(duration_s, max((float(r["end_s"]) for r in records), default=1.0), 1e-9)
    shapes = []
    for r in records:
        label = _detected(r)
        x, w = float(r["start_s"]) * scale, max((float(r["end_s"]) - float(r["start_s"])) * scale, 0.5)
        tip = f"{r['start_s']:.1f}–{r['end_s']:.1f} s: {label} ({r['confidence']:.2f})"
        href = segment_url(model, f"{recording_id}:{r['segment_index']}")
        opacity = 0.3 + 0.7 * float(r["confidence"] or 0.0)
        shapes.append(
            f'<a href="{esc(href)}"><rect x="{x:.2f}" y="0" width="{w:.2f}" height="{SVG_ROW}" '
            f'fill="{colours[label]}" fill-opacity="{opacity:.2f}" stroke="#fff" stroke-width="0.3">'
            f"<title>{esc(tip)}</title></rect></a>"
        )
    legend = " ".join(
        f'<span class="swatch" data-colour="{c}"><svg width="12" height="12"><rect width="12" height="12" '
        f'fill="{c}" stroke="#999"/></svg> {esc(label)} ({counts[label]})</span>'
        for label, c in colours.items()
        if counts[label]
    )
    return (
        f'<svg class="timeline" viewBox="0 0 {SVG_WIDTH} {SVG_ROW}" preserveAspectRatio="none" '
        f'role="img" aria-label="timeline">{"".join(shapes)}</svg>'
        f'<p class="note">0 s … {duration_s:.1f} s; opacity: confidence. {legend}</p>'
    )


FACTS = ("uri", "status", "duration_s", "n_segments", "sample_rate_hz", "channels", "run_id", "error")
EVENT_COLUMNS = ("start_s", "end_s", "n_segments", "mean_confidence", "max_confidence")


def _events(model: str, rid: str, events: QueryResult) -> str:
    rows = [
        [link(segment_url(model, f"{rid}:{e['first_segment']}"), e["label"]), *(e[c] for c in EVENT_COLUMNS)]
        for e in events.records()
    ]
    return grid(["label", *EVENT_COLUMNS], rows, "events")


def _segments(model: str, rid: str, records: list[dict[str, Any]]) -> str:
    rows = [
        [
            link(segment_url(model, f"{rid}:{r['segment_index']}"), r["segment_index"]),
            *(r[c] for c in ("start_s", "end_s")),
            Html(esc(_detected(r))),
            *(r[c] for c in ("label", "confidence", "audioset_label")),
        ]
        for r in records[:MAX_SEGMENT_ROWS]
    ]
    more = len(records) - len(rows)
    columns = ["segment", "start_s", "end_s", "detected", "top label", "confidence", "AudioSet"]
    return grid(columns, rows, "segments") + (f'<p class="note">… and {more} more</p>' if more > 0 else "")


def recording_page(model: str, rec: Mapping[str, Any], rows: QueryResult, events: QueryResult) -> str:
    rid, records = rec["recording_id"], rows.records()
    strip = (
        timeline_svg(model, rid, rows, float(rec["duration_s"] or 0.0))
        if records
        else '<p class="note">no segments</p>'
    )
    body = [
        grid(list(FACTS), [[rec[c] for c in FACTS]], "facts"),
        f"<h2>Timeline</h2>{strip}",
        "<h2>Events (consecutive segments with the same detected label)</h2>",
        _events(model, rid, events),
        "<h2>Segments</h2>",
        _segments(model, rid, records),
    ]
    return layout(f"Recording {name_of(rec['uri'])}", "".join(body), model)
