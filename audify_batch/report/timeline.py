"""The run report's timelines: per recording, one lane per detected label, long recordings binned.

A recording's lanes are its most frequent detected labels (the label on the y axis), then one
"other" lane. ``report_timeline.sql`` bins a recording with more segments than the figure has
pixels into time bins in DuckDB, so even a recording of a hundred hours gives a bounded number
of rows (``(TIMELINE_LANES + 1) * TIMELINE_BINS`` at most).
"""

from __future__ import annotations

import os
from typing import Any

import duckdb
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from audify_batch.report.html import figure_png
from audify_batch.store.query import QueryResult, fetch_file

# Okabe & Ito's qualitative palette, safe for the common colour-vision deficiencies.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
OTHER_COLOUR = "#999999"  # labels beyond the palette, and the "other" lane
TIMELINE_LANES = 8  # lanes per recording, besides "other"
TIMELINE_BINS = 1000  # about the width of a timeline in pixels: more segments than this are binned
LANE_IN = 0.16  # figure height per lane (inches)
AXES_IN = 0.65  # and per recording: its title, time axis and label


def label_colours(labels: list[str]) -> dict[str, Any]:
    """The first labels (the archive's most frequent) in the palette's colours, one each."""
    return dict(zip(labels, OKABE_ITO, strict=False))


def timeline_rows(
    con: duckdb.DuckDBPyConnection,
    model: str,
    uri: str,
    lanes: int = TIMELINE_LANES,
    bins: int = TIMELINE_BINS,
) -> QueryResult:
    """(lane, label, start_s, end_s, confidence) rows of one recording's timeline, lane 1 first."""
    return fetch_file(con, "report_timeline", {"model": model, "uri": uri, "lanes": lanes, "bins": bins})


def time_unit(length_s: float) -> tuple[str, float]:
    """The unit a time axis of ``length_s`` reads best in, and its length in seconds."""
    if length_s > 3 * 3600:
        return "h", 3600.0
    if length_s > 10 * 60:
        return "min", 60.0
    return "s", 1.0


def timeline_png(
    con: duckdb.DuckDBPyConnection, model: str, uris: list[str], colours: dict[str, Any]
) -> bytes:
    timelines = [timeline_rows(con, model, uri) for uri in uris]
    n_lanes = [max(1, len({row[0] for row in rows.rows})) for rows in timelines]
    height_in = sum(LANE_IN * n + AXES_IN for n in n_lanes) + 0.5
    fig = Figure(figsize=(11, height_in), layout="constrained")
    ratios = [LANE_IN * n + AXES_IN for n in n_lanes]
    axes = fig.subplots(len(uris), 1, squeeze=False, gridspec_kw={"height_ratios": ratios})[:, 0]
    for ax, uri, rows in zip(axes, uris, timelines, strict=True):
        _draw_lanes(ax, rows, colours)
        ax.set_title(os.path.basename(uri), fontsize=8, loc="left")
    fig.suptitle(
        "timelines: detected labels, one lane each; opacity = confidence (long recordings: "
        "the highest in each time bin); gaps: nothing known",
        fontsize=9,
    )
    return figure_png(fig)


def _draw_lanes(ax: Axes, rows: QueryResult, colours: dict[str, Any]) -> None:
    lanes: dict[int, tuple[str, list[tuple[float, float, float]]]] = {}
    for lane, label, start_s, end_s, confidence in rows.rows:
        lanes.setdefault(lane, (label, []))[1].append((start_s, end_s, confidence))
    if not lanes:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "nothing known detected", ha="center", va="center", transform=ax.transAxes)
        return
    length_s = max(end for _, spans in lanes.values() for _, end, _ in spans)
    unit, unit_s = time_unit(length_s)
    for y, (label, spans) in enumerate(lanes.values()):
        colour = colours.get(label, OTHER_COLOUR)
        bars = [(start / unit_s, (end - start) / unit_s) for start, end, _ in spans]
        faces = [to_rgba(colour, 0.25 + 0.75 * min(max(conf, 0.0), 1.0)) for _, _, conf in spans]
        ax.broken_barh(bars, (y - 0.4, 0.8), facecolors=faces, linewidth=0)
    ax.set_yticks(range(len(lanes)), [label for label, _ in lanes.values()], fontsize=7)
    ax.set_ylim(len(lanes) - 0.5, -0.5)  # lane 1 on top
    ax.set_xlim(0, length_s / unit_s)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel(f"time in recording ({unit})", fontsize=7)
