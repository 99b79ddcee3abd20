"""HTML of the review queues: a queue, the index of label queues, and the page for a new class."""

from __future__ import annotations

from collections.abc import Sequence

from audify_batch.app.custom_heads import HeadSummary
from audify_batch.app.data import QUEUE_SIZE, Walk
from audify_batch.app.pages import grid, layout, link, name_of, recording_url, segment_url, url
from audify_batch.report.html import esc
from audify_batch.review.queues import QueueItem
from audify_batch.store.query import QueryResult

QUEUE_TITLES = {
    "uncertain": "Least confident segments",
    "near-tie": "Near ties: top two labels nearly equal",
    "label": "Label queue",
}
QUEUE_NOTES = {
    "uncertain": "the calls the model is least sure of (for a model with per-class thresholds: the scores "
    "nearest their threshold, detected or just missed)",
    "near-tie": "the segments whose two best labels are closest in confidence",
    "label": "a sample over the whole score range of the label: score bins take turns",
}
EXTRA_COLUMNS = {"uncertain": ["margin"], "near-tie": ["runner_up", "margin"], "label": ["bin"]}


def walk_title(walk: Walk) -> str:
    """What a walk is called on its pages."""
    if walk.kind == "list":
        return "filtered segments"
    if walk.seed:
        return f"Segments like {walk.seed}, for {walk.label}"
    title = QUEUE_TITLES[walk.kind] + (f": {walk.label}" if walk.label else "")
    return title + (f" (custom head {walk.head})" if walk.head else "")


def _note(walk: Walk) -> str:
    if walk.seed:
        return (
            f"the segment you started from, then the segments most like it (cosine similarity of their "
            f"embeddings); each is put to you as {walk.label!r}: c, it is there; w, it is not"
        )
    if walk.head:
        return f"a sample over the whole range of custom head {walk.head}'s scores: score bins take turns"
    return QUEUE_NOTES[walk.kind]


def queue_page(model: str, walk: Walk, items: Sequence[QueueItem], note: str = "") -> str:
    """A review queue: what is left to review, the first segment a click (or a key) away.
    ``note``: why this is not quite the queue asked for (a fallback)."""
    extra = [] if walk.seed else EXTRA_COLUMNS[walk.kind]
    rows = [
        [
            link(segment_url(model, item.segment_id, walk), item.segment_id, "segment"),
            link(recording_url(model, item.segment_id.split(":")[0]), name_of(item.uri)),
            item.start_s,
            item.end_s,
            item.label,
            item.score,
            *(getattr(item, name) for name in extra),
        ]
        for item in items
    ]
    start = (
        link(segment_url(model, items[0].segment_id, walk), "start reviewing (first segment)")
        if items
        else ""
    )
    if walk.kind == "label" and walk.label and not walk.seed:
        calibrate = url("/calibrate", {"model": model, "label": walk.label, "head": walk.head})
        start += f" · {link(calibrate, f'what the scores of {walk.label} mean (calibration)')}"
    warn = f'<p class="warn">{esc(note)}.</p>' if note else ""
    text = (
        f'<p class="note">{esc(_note(walk))}; segments with a verdict leave the queue '
        f"({len(items)} segments, at most {QUEUE_SIZE}).</p>"
    )
    header = ["segment", "recording", "start_s", "end_s", "label", "similarity" if walk.seed else "score"]
    return layout(
        walk_title(walk), warn + text + f"<p>{start}</p>" + grid(header + extra, rows, "queue"), model
    )


def label_form(model: str, labels: Sequence[str], button: str) -> str:
    """Free text for a label (a known one offered as you type, or a new class): ``/queues?label=``."""
    options = "".join(f'<option value="{esc(label)}">' for label in labels)
    return (
        '<form method="get" action="/queues" class="filters">'
        f'<input type="hidden" name="model" value="{esc(model)}">'
        '<label>label <input name="label" id="queue-label" list="known-labels" maxlength="80" size="28" '
        'placeholder="a label, or a new class" required></label>'
        f'<datalist id="known-labels">{options}</datalist><button>{esc(button)}</button></form>'
    )


def _heads(model: str, heads: Sequence[HeadSummary]) -> str:
    rows = [
        [
            link(url("/queues", {"model": model, "label": h.label, "head": h.name}), h.label),
            h.name,
            h.n_scored,
        ]
        for h in heads
    ]
    return "<h2>Custom heads</h2>" + grid(["label", "head", "segments scored"], rows, "heads")


def queue_index_page(model: str, labels: QueryResult, heads: Sequence[HeadSummary]) -> str:
    rows = [
        [link(url("/queues", {"model": model, "label": label}), label), n_top_k, n_detected]
        for label, n_top_k, n_detected in labels.rows
    ]
    known = [str(r[0]) for r in labels.rows] + [h.label for h in heads]
    body = (
        "<p>Pick a label: its queue samples segments over the whole range of its score. Or review the "
        f"{link(url('/queues/uncertain', {'model': model}), 'least confident segments')} or the "
        f"{link(url('/queues/near-tie', {'model': model}), 'near ties')}. A label the model does not "
        "know (a class of your own) can be typed in too.</p>"
        + label_form(model, sorted(set(known)), "open its queue")
        + grid(
            ["label", "segments with it in their top labels", "segments where it is detected"], rows, "labels"
        )
        + (_heads(model, heads) if heads else "")
    )
    return layout("Review queues", body, model)


def new_label_page(model: str, label: str) -> str:
    """For a label neither the model nor a custom head scores: start from a segment, walk its likes."""
    table = link(url("/segments", {"model": model}), "the segment table")
    body = (
        f"<p><strong>{esc(label)}</strong> is not among the labels model <code>{esc(model)}</code> gave "
        "in this output, and no custom head scores it: the model's confidence of it is 0 everywhere, so "
        "a queue over that score would say nothing.</p>"
        "<p>Start instead from a segment where you know it is (find one in "
        f"{table}, on a recording's timeline, or on any segment page under “review for a label”): "
        "the desk then walks that segment and the segments most like it (by embedding), asking "
        f"for {esc(label)} each time: <kbd>c</kbd> it is there, <kbd>w</kbd> it is not. Both kinds "
        "count: a custom head needs at least 5 of each. Then train and apply one "
        f"(<code>audify head train OUT --name NAME --label {esc(repr(label))}</code>, "
        "<code>audify head apply OUT --head NAME</code>): once its scores are in OUT, this label's "
        "queue samples its segments over the head's scores.</p>"
        '<form method="get" action="/queues" class="filters">'
        f'<input type="hidden" name="model" value="{esc(model)}">'
        f'<input type="hidden" name="label" value="{esc(label)}">'
        '<label>start from segment <input name="seed" id="seed" size="24" required '
        'pattern="[0-9a-f]{16}:[0-9]{1,9}" placeholder="RECORDING_ID:INDEX"></label>'
        "<button>walk the segments like it</button></form>"
    )
    return layout(f"A new class: {label}", body, model)
