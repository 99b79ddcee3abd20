"""HTML of the review desk's pages: small string builders, every value escaped (``report.html.esc``).

Pages load one stylesheet and one script from ``/static`` and nothing from anywhere else.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from audify_batch.app.custom_heads import HeadSummary
from audify_batch.app.data import HIGH_HEAD_SCORE, PAGE_SIZE, SegmentFilter, Walk, segment_id
from audify_batch.report.html import esc
from audify_batch.store.query import QueryResult


class Html(str):
    """Markup that is already escaped: table cells put it in as it is."""

    __slots__ = ()


def url(path: str, items: Sequence[tuple[str, Any]] | Mapping[str, Any] = ()) -> str:
    """``path?query`` from (name, value) pairs; None values are left out."""
    pairs = items.items() if isinstance(items, Mapping) else items
    query = urlencode([(k, str(v)) for k, v in pairs if v is not None])
    return f"{path}?{query}" if query else path


def link(href: str, text: Any, css: str = "") -> Html:
    klass = f' class="{esc(css)}"' if css else ""
    return Html(f'<a href="{esc(href)}"{klass}>{esc(text)}</a>')


def segment_url(
    model: str,
    segment: str,
    walk: Walk | None = None,
    position: int | None = None,
    label: str | None = None,
) -> str:
    """A segment page; ``walk``: the list it is walked in; ``label``: the label to put to the
    reviewer (outside a walk, which names its own)."""
    items: list[tuple[str, Any]] = [("model", model)]
    if walk is not None:
        items += walk.query_items(position)
    elif label:
        items.append(("label", label))
    return url(f"/segments/{segment}", items)


def recording_url(model: str, recording_id: str) -> str:
    return url(f"/recordings/{recording_id}", {"model": model})


def _cell(value: Any) -> str:
    if isinstance(value, Html):
        return f"<td>{value}</td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.3f}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    return f"<td>{esc('' if value is None else value)}</td>"


def grid(columns: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    if not rows:
        return '<p class="note">none</p>'
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    klass = f' class="{esc(css)}"' if css else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def layout(title: str, body: str, model: str | None, attrs: Mapping[str, str] | None = None) -> str:
    """A whole page: navigation, ``title``, ``body``; ``attrs``: ``data-*`` attributes of <body>."""
    data = "".join(f' data-{esc(k)}="{esc(v)}"' for k, v in (attrs or {}).items())
    m = {"model": model} if model else {}
    nav = " ".join(
        [
            link(url("/", m), "Overview"),
            link(url("/segments", m), "Segments"),
            link(url("/queues", m), "Label queues"),
            link(url("/queues/uncertain", m), "Least confident"),
            link(url("/queues/near-tie", m), "Near ties"),
            link(url("/calibrate", m), "Calibrate"),
            link(url("/report", m), "Run report"),
        ]
    )
    model_note = f'<span class="model">model <code>{esc(model)}</code></span>' if model else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)} · audify</title><link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/static/app.css"><script src="/static/app.js" defer></script>'
        f"</head><body{data}><nav>{nav}{model_note}</nav><main><h1>{esc(title)}</h1>{body}</main>"
        "</body></html>\n"
    )


def error_page(status: int, message: str, model: str | None = None) -> str:
    return layout(
        f"{status}: {message}", f'<p><a href="{esc(url("/", {"model": model}))}">overview</a></p>', model
    )


def pager(path: str, items: Sequence[tuple[str, Any]], offset: int, shown: int, total: int) -> str:
    """'rows a–b of N' with previous/next page links (``offset`` travels in the query string)."""
    if total == 0:
        return '<p class="note">no rows</p>'
    parts = [f"rows {offset + 1}–{offset + shown} of {total}"]
    if offset > 0:
        parts.insert(
            0, link(url(path, [*items, ("offset", max(offset - PAGE_SIZE, 0))]), "← previous", "prev")
        )
    if offset + shown < total:
        parts.append(link(url(path, [*items, ("offset", offset + PAGE_SIZE)]), "next →", "next"))
    return f'<p class="pager">{" · ".join(parts)}</p>'


def name_of(uri: str) -> str:
    return posixpath.basename(uri.rstrip("/")) or uri


TOTALS = ("recordings", "labeled", "failed", "segments", "hours", "runs", "reviewed_segments", "verdicts")


def _totals(totals: QueryResult) -> str:
    rows = [
        [link(url("/", {"model": r["model"]}), r["model"]), *(r[c] for c in TOTALS)] for r in totals.records()
    ]
    return grid(["model", *TOTALS], rows, "totals")


def _recordings(model: str, recs: QueryResult, offset: int) -> str:
    rows = [
        [
            link(recording_url(model, r["recording_id"]), name_of(r["uri"])),
            r["status"],
            r["duration_s"],
            r["n_segments"],
            r["error"],
        ]
        for r in recs.records()
    ]
    total = int(recs.rows[0][-1]) if recs.rows else 0
    table = grid(["recording", "status", "duration_s", "segments", "error"], rows)
    return "<h2>Recordings</h2>" + table + pager("/", [("model", model)], offset, len(rows), total)


def _heads(model: str, heads: Sequence[HeadSummary]) -> str:
    rows = [
        [
            h.name,
            h.label,
            h.n_scored,
            link(
                url("/segments", {"model": model, "head": h.name, "min_head_score": HIGH_HEAD_SCORE}),
                h.n_high,
            ),
            link(url("/queues", {"model": model, "label": h.label, "head": h.name}), "review queue"),
            link(url("/calibrate", {"model": model, "head": h.name}), "calibrate"),
        ]
        for h in heads
    ]
    columns = ["head", "label", "segments scored", f"scoring >= {HIGH_HEAD_SCORE:g}", "", ""]
    note = (
        '<p class="note">heads trained on reviewers\' verdicts (audify head train) and applied to every '
        "segment (audify head apply); their queues sample the head's whole score range.</p>"
    )
    return "<h2>Custom heads</h2>" + note + grid(columns, rows, "heads")


def overview_page(
    model: str | None,
    totals: QueryResult,
    labels: QueryResult,
    recs: QueryResult,
    offset: int,
    heads: Sequence[HeadSummary] = (),
) -> str:
    """Totals per model; for ``model``: its detected labels, its custom heads, its recordings, its
    run report."""
    body = [f"<h2>Totals</h2>{_totals(totals)}"]
    if model is None:
        return layout("audify review desk", "".join(body), None)
    label_rows = [
        [
            link(url("/segments", {"model": model, "detected": label}), label),
            n,
            link(url("/queues", {"model": model, "label": label}), "review queue"),
            link(url("/calibrate", {"model": model, "label": label}), "calibrate"),
        ]
        for label, n in labels.rows
    ]
    if heads:
        body.append(_heads(model, heads))
    body.append("<h2>Detected labels</h2>" + grid(["label", "segments", "", ""], label_rows, "labels"))
    body.append(_recordings(model, recs, offset))
    body.append(f"<p>{link(url('/report', {'model': model}), 'the run report of this model')}</p>")
    return layout("audify review desk", "".join(body), model)


def _select(name: str, options: Sequence[tuple[str, int]], chosen: str | None, blank: str = "any") -> str:
    opts = [f'<option value="">{esc(blank)}</option>']
    for value, n in options:
        selected = " selected" if value == chosen else ""
        opts.append(f'<option value="{esc(value)}"{selected}>{esc(value)} ({n})</option>')
    return f'<select name="{esc(name)}" id="f-{esc(name)}">{"".join(opts)}</select>'


def _input(name: str, value: Any, kind: str = "text", size: int = 8) -> str:
    shown = "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
    step = ' step="any"' if kind == "number" else ""
    named = f'name="{esc(name)}" id="f-{esc(name)}"'
    return f'<input type="{kind}" {named} value="{esc(shown)}" size="{size}"{step}>'


def filter_form(model: str, models: Sequence[str], f: SegmentFilter, choices: Mapping[str, Any]) -> str:
    model_opts = "".join(
        f'<option value="{esc(m)}"{" selected" if m == model else ""}>{esc(m)}</option>' for m in models
    )
    fields = [
        ("model", f'<select name="model" id="f-model">{model_opts}</select>'),
        ("top label", _select("label", choices["label"], f.label)),
        ("detected", _select("detected", choices["detected"], f.detected)),
        ("AudioSet top label", _select("audioset", choices["audioset"], f.audioset)),
        ("score from", _input("min_score", f.min_score, "number", 5)),
        ("to", _input("max_score", f.max_score, "number", 5)),
        ("recording uri contains", _input("uri", f.uri, size=18)),
        ("start_s from", _input("min_start_s", f.min_start_s, "number", 6)),
        ("to", _input("max_start_s", f.max_start_s, "number", 6)),
        ("run", _select("run_id", choices["run_id"], f.run_id)),
    ]
    if choices.get("head"):
        fields += [
            ("custom head", _select("head", choices["head"], f.head, "none")),
            ("its score from", _input("min_head_score", f.min_head_score, "number", 5)),
        ]
    labelled = "".join(f"<label>{esc(text)} {widget}</label>" for text, widget in fields)
    reset = link(url("/segments", {"model": model}), "clear")
    form = '<form method="get" action="/segments" class="filters">'
    return f"{form}{labelled}<button>filter</button> {reset}</form>"


def _segment_cells(model: str, row: Mapping[str, Any], walk: Walk, position: int) -> list[Any]:
    sid = segment_id(row)
    return [
        link(segment_url(model, sid, walk, position), sid, "segment"),
        link(recording_url(model, row["recording_id"]), name_of(row["uri"])),
        row["start_s"],
        row["end_s"],
    ]


def segments_page(
    model: str,
    models: Sequence[str],
    f: SegmentFilter,
    choices: Mapping[str, Any],
    rows: QueryResult,
    offset: int,
) -> str:
    walk = Walk("list", f)
    records = rows.records()
    table_rows = [
        [
            *_segment_cells(model, r, walk, offset + i),
            r["label"],
            r["score"],
            r["detected"],
            r["audioset"],
            *([r["head_score"]] if f.head else []),
            r["reviewed"],
        ]
        for i, r in enumerate(records)
    ]
    total = int(records[0]["n_total"]) if records else 0
    columns = [
        "segment",
        "recording",
        "start_s",
        "end_s",
        "top label",
        "score",
        "detected",
        "AudioSet",
        *([f"{f.head} score"] if f.head else []),
        "verdicts",
    ]
    items = [("model", model), *f.query_items()]
    body = (
        filter_form(model, models, f, choices)
        + pager("/segments", items, offset, len(records), total)
        + grid(columns, table_rows, "segments")
    )
    return layout("Segments", body, model)
