"""The page of one segment: listen, see what the model heard, give a verdict, walk on.

The review panel's data attributes tell ``static/app.js`` what to post and where to go next;
the similar segments arrive as a fragment after the page (their query scans every embedding),
the figures once the audio has loaded (they take a pass of the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from audify_batch.app.custom_heads import HeadScore
from audify_batch.app.data import Segment, Walk, segment_id
from audify_batch.app.pages import (
    Html,
    grid,
    layout,
    link,
    name_of,
    recording_url,
    segment_url,
    url,
)
from audify_batch.app.queue_pages import walk_title
from audify_batch.app.queueing import Neighbours
from audify_batch.report.html import esc
from audify_batch.store.query import QueryResult

KEYS = (
    ("c", "the shown label is correct"),
    ("w", "it is wrong"),
    ("o", "other label: pick or type it, then Enter"),
    ("n / j", "next segment"),
    ("p / k", "previous segment"),
    ("space", "play / pause"),
)


@dataclass(frozen=True)
class SegmentView:
    """Everything the segment page shows besides the segment itself."""

    segment: Segment
    verdicts: QueryResult
    label_choices: Sequence[str]  # the loaded model's labels
    figure_names: Sequence[str]
    loaded_model: str  # '<name>-<version>' of the model that draws the figures
    walk: Walk | None = None
    around: Neighbours | None = None
    review_label: str | None = None  # the label a queue, a filter or ?label= asks about; None: the model's
    heads: Sequence[HeadScore] = ()  # custom heads' scores of the segment

    @property
    def shown_label(self) -> str:
        """The label put to the reviewer (``c``: present, ``w``: absent)."""
        return self.review_label or self.segment.shown_label


def _walk_nav(view: SegmentView) -> str:
    walk, around = view.walk, view.around
    if walk is None or around is None:
        return ""
    name = walk_title(walk)
    if around.position is not None:
        parts = [f"{around.position + 1} / {around.total} in {esc(name)}"]
    else:
        parts = [f"has its verdict, so no longer in {esc(name)} ({around.total} to go)"]
    previous, following = _around_urls(view)
    if previous:
        parts.insert(0, link(previous, "← previous (p)", "prev"))
    if following:
        parts.append(link(following, "next (n) →", "next"))
    return f'<p class="walk">{" · ".join(parts)}</p>'


def _around_urls(view: SegmentView) -> tuple[str, str]:
    """URLs of the previous and next segment of the walk ('' where there is none)."""
    walk, around, model = view.walk, view.around, view.segment.model
    if walk is None or around is None:
        return "", ""
    at = around.position if around.position is not None else -1
    previous = segment_url(model, around.previous, walk, at - 1) if around.previous else ""
    following = segment_url(model, around.next, walk, at + 1) if around.next else ""
    return previous, following


def _asked(view: SegmentView) -> str:
    """Where the shown label comes from, when it is not the model's own call."""
    own = view.segment.shown_label
    if not view.review_label or view.review_label == own:
        return ""
    return f' <span class="note">(asked for here; the model\'s own call: {esc(own or "none")})</span>'


def _review_panel(view: SegmentView) -> str:
    seg = view.segment
    choices = [*view.label_choices, *(lab for lab in seg.labels if lab not in view.label_choices)]
    options = "".join(f'<option value="{esc(c)}">{esc(c)}</option>' for c in choices if c != view.shown_label)
    verdict_rows = [
        [r["label"], r["verdict"], r["annotator"], str(r["annotated_at"])[:19], r["n_verdicts"]]
        for r in view.verdicts.records()
    ]
    keys = " ".join(f"<kbd>{esc(k)}</kbd> {esc(text)};" for k, text in KEYS)
    return (
        '<section id="review"><p class="shown">shown label: '
        f'<strong id="shown-label">{esc(view.shown_label)}</strong>{_asked(view)}</p><p class="buttons">'
        '<button type="button" id="mark-correct" data-verdict="present">✓ correct (c)</button> '
        '<button type="button" id="mark-wrong" data-verdict="absent">✗ wrong (w)</button> '
        '<span class="other"><select id="other-select">'
        f'<option value="">other label…</option>{options}</select> '
        '<input id="other-text" maxlength="80" placeholder="or a new class" size="16"> '
        '<button type="button" id="mark-other">other (o)</button></span></p>'
        '<p id="review-status" role="status" class="note"></p>'
        f'<p class="keys note">{keys}</p>'
        "<h3>Verdicts given</h3>"
        + grid(["label", "verdict", "annotator", "at (UTC)", "verdicts on it"], verdict_rows, "verdicts")
        + _ask_form(view)
        + "</section>"
    )


def _ask_form(view: SegmentView) -> str:
    """Review this segment for any label (a new class too), or walk the segments like it for it."""
    seg = view.segment
    return (
        f'<form method="get" action="{esc(f"/segments/{seg.segment_id}")}" class="ask note">'
        f'<input type="hidden" name="model" value="{esc(seg.model)}">'
        '<label>review for a label <input name="label" id="ask-label" maxlength="80" size="18" '
        'placeholder="any label, or a new class" required></label> '
        "<button>this segment</button> "
        f'<button name="seed" value="{esc(seg.segment_id)}" formaction="/queues">'
        "this segment and the ones like it</button></form>"
    )


def _heads(view: SegmentView) -> str:
    """The custom heads' scores, each with links to review this segment or the head's queue for its label."""
    if not view.heads:
        return ""
    seg = view.segment
    rows = [
        [
            h.name,
            h.label,
            h.score,
            link(segment_url(seg.model, seg.segment_id, label=h.label), f"review for {h.label}"),
            link(url("/queues", {"model": seg.model, "label": h.label, "head": h.name}), "its queue"),
        ]
        for h in view.heads
    ]
    return "<h2>Custom heads</h2>" + grid(["head", "label", "score", "", ""], rows, "heads")


def _labels(seg: Segment) -> str:
    detected = set(seg.detected or ())
    rows = [
        [i + 1, lab, conf, "yes" if lab in detected else ""]
        for i, (lab, conf) in enumerate(zip(seg.labels, seg.confidences, strict=True))
    ]
    parts = ["<h2>Labels</h2>", grid(["rank", "label", "confidence", "detected"], rows, "labels")]
    if seg.detected is not None:
        parts.append(f"<p>detected: <strong>{esc(', '.join(seg.detected) or '(nothing known)')}</strong></p>")
    if seg.audioset_labels:
        audioset = [
            [i + 1, lab, score]
            for i, (lab, score) in enumerate(zip(seg.audioset_labels, seg.audioset_scores, strict=True))
        ]
        parts += ["<h3>AudioSet labels</h3>", grid(["rank", "label", "score"], audioset, "audioset")]
    return "".join(parts)


def _images(seg: Segment, names: Sequence[str]) -> str:
    return "".join(
        f'<figure><img data-src="{esc(url(f"/figures/{seg.segment_id}/{name}.png", {"model": seg.model}))}" '
        f'alt="{esc(name)}" loading="lazy"><figcaption>{esc(name.replace("_", " "))}</figcaption></figure>'
        for name in names
    )


def _figures(view: SegmentView) -> tuple[str, str]:
    """What the model heard (waveform, log-mel, top labels, Grad-CAM), and its CNN feature maps."""
    seg = view.segment
    note = ""
    if view.loaded_model != seg.model:
        note = (
            '<p class="warn">These figures come from the loaded model '
            f"<code>{esc(view.loaded_model)}</code>, "
            f"not from <code>{esc(seg.model)}</code>, which labeled this segment.</p>"
        )
    stages = [name for name in view.figure_names if name.startswith("stage_")]
    heard = [name for name in view.figure_names if name not in stages]
    return (
        f'<h2>What the model heard</h2>{note}<div class="figures">{_images(seg, heard)}</div>',
        f'<h2>CNN feature maps</h2><div class="figures">{_images(seg, stages)}</div>',
    )


def segment_page(view: SegmentView) -> str:
    seg = view.segment
    length = f" of {seg.recording_s:.1f} s" if seg.recording_s is not None else ""
    facts = (
        f'<p class="facts">{link(recording_url(seg.model, seg.recording_id), name_of(seg.uri))}, '
        f"{seg.start_s:.2f}–{seg.end_s:.2f} s{esc(length)} · run <code>{esc(seg.run_id)}</code> · "
        f'<span class="uri">{esc(seg.uri)}</span></p>'
    )
    audio_src = url(f"/audio/{seg.segment_id}", {"model": seg.model})
    player = (
        f'<p class="player"><audio id="player" controls preload="auto" src="{esc(audio_src)}"></audio> '
        '<label class="note"><input type="checkbox" id="autoplay"> play each segment on arrival</label></p>'
    )
    similar_src = url(f"/segments/{seg.segment_id}/similar", {"model": seg.model, "label": view.review_label})
    previous, following = _around_urls(view)
    heard, feature_maps = _figures(view)
    attrs = {
        "page": "segment",
        "segment-id": seg.segment_id,
        "model": seg.model,
        "label": view.shown_label,
        "next": following,
        "prev": previous,
    }
    body = [
        _walk_nav(view),
        facts,
        player,
        _review_panel(view),
        _labels(seg),
        _heads(view),
        heard,
        f'<h2>Similar segments</h2><section id="similar" data-src="{esc(similar_src)}">'
        '<p class="note">loading…</p></section>',
        feature_maps,
    ]
    return layout(f"Segment {seg.segment_id}", "".join(body), seg.model, attrs)


def similar_fragment(model: str, rows: QueryResult, label: str | None = None) -> str:
    """The similar segments as a table, each playable (``preload="none"``: nothing loads until played);
    ``label``: the label their links put to the reviewer (None: each segment's own)."""
    table_rows = []
    for r in rows.records():
        sid = segment_id(r)
        audio = url(f"/audio/{sid}", {"model": model})
        table_rows.append(
            [
                r["position"],
                link(segment_url(model, sid, label=label), sid, "segment"),
                link(recording_url(model, r["recording_id"]), name_of(r["uri"])),
                r["start_s"],
                r["label"],
                r["confidence"],
                r["similarity"],
                Html(f'<audio controls preload="none" src="{esc(audio)}"></audio>'),
            ]
        )
    columns = ["#", "segment", "recording", "start_s", "top label", "confidence", "similarity", "listen"]
    return grid(columns, table_rows, "similar")
