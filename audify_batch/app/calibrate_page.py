"""HTML of the calibration page: the form, the bins (what ``audify calibrate`` prints), a
precision-by-score figure, the threshold and its save button (``static/app.js`` posts it)."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from audify_batch.app.calibration import CalibrationQuery, Outcome
from audify_batch.app.custom_heads import HeadSummary
from audify_batch.app.pages import grid, layout, link, url
from audify_batch.report.html import esc, figure_png, img
from audify_batch.review.calibrate import Calibration
from audify_batch.store.query import QueryResult


def precision_figure(c: Calibration) -> bytes:
    """Precision per score bin with its Wilson 95 % interval (n under each), the target precision and
    the threshold, as a PNG."""
    fig = Figure(figsize=(7.5, 3.0))
    ax = fig.add_subplot()
    filled = [b for b in c.bins if b.n and b.precision is not None]
    centres = [(b.low_score + b.high_score) / 2 for b in filled]
    precision = [b.precision or 0.0 for b in filled]
    errors = [  # float rounding may put an end of the interval a hair past the precision
        [max(p - b.low, 0.0) for p, b in zip(precision, filled, strict=True)],
        [max(b.high - p, 0.0) for p, b in zip(precision, filled, strict=True)],
    ]
    ax.errorbar(
        centres, precision, yerr=errors, fmt="o", capsize=3, color="#1f77b4", label="precision (95 % CI)"
    )
    for x, b in zip(centres, filled, strict=True):
        ax.annotate(f"n={b.n}", (x, -0.02), ha="center", va="top", fontsize=7, color="#555")
    ax.axhline(c.target_precision, ls="--", color="#888", lw=1, label=f"target {c.target_precision:g}")
    if c.threshold is not None:
        ax.axvline(
            c.threshold.threshold, color="#d62728", lw=1.2, label=f"threshold {c.threshold.threshold:.3f}"
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.12, 1.05)
    ax.set_xlabel(f"score ({'custom head ' + c.head if c.head else 'confidence of ' + c.label})")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return figure_png(fig)


def _bins(c: Calibration) -> str:
    rows = [
        [
            f"{b.low_score:.2f}–{b.high_score:.2f}",
            b.n,
            b.n_present,
            "–" if b.precision is None else f"{b.precision:.3f}",
            f"{b.low:.3f}–{b.high:.3f}" if b.n else "–",
        ]
        for b in c.bins
    ]
    return grid(["score", "n", "present", "precision", "95 % interval (Wilson)"], rows, "bins")


def _threshold(c: Calibration) -> str:
    t = c.threshold
    if t is None:
        return (
            f'<p class="warn" id="threshold">threshold: none for target precision {c.target_precision:g} '
            f"({esc(c.reason)})</p>"
        )
    return (
        f'<p class="threshold" id="threshold">threshold <strong>{t.threshold:.4f}</strong>: precision '
        f"{t.precision:.3f} (95 % CI {t.low:.3f}–{t.high:.3f}) over {t.n} reviewed segments scoring "
        f"&gt;= it (target {c.target_precision:g})</p>"
    )


def _save_button(outcome: Outcome) -> str:
    c, q = outcome.calibration, outcome.query
    if c is None or c.threshold is None:
        return ""
    attrs = {
        "model": outcome.model,
        "label": c.label,
        "head": c.head or "",
        "target": f"{q.target_precision:g}",
        "bins": str(q.bins),
        "min-reviews": str(q.min_reviews),
    }
    data = "".join(f' data-{k}="{esc(v)}"' for k, v in attrs.items())
    return (
        f'<p><button type="button" id="save-threshold"{data}>'
        f"save threshold {c.threshold.threshold:.4f}</button> "
        f"into <code>{esc(outcome.path)}</code> (what audify calibrate writes)</p>"
        '<p id="save-status" role="status" class="note"></p>'
    )


def _saved(outcome: Outcome) -> str:
    if outcome.saved_problem:
        return f'<p class="warn">the thresholds file is not readable: {esc(outcome.saved_problem)}</p>'
    entry = outcome.saved
    if not entry:
        return '<p class="note" id="saved">no threshold saved for it yet</p>'
    return (
        f'<p class="note" id="saved">saved: threshold {float(entry.get("threshold", 0.0)):.4f} for target '
        f"{esc(entry.get('target_precision'))} over {esc(entry.get('n_reviewed'))} reviewed segments, "
        f"{esc(entry.get('created_at', ''))}</p>"
    )


def _number(name: str, value: float | int, size: int) -> str:
    return f'<input type="number" name="{name}" id="f-{name}" step="any" size="{size}" value="{value:g}">'


def _form(model: str, q: CalibrationQuery, labels: Sequence[str], heads: Sequence[HeadSummary]) -> str:
    options = "".join(f'<option value="{esc(label)}">' for label in labels)
    label = (
        f'<input name="label" id="f-label" list="reviewed-labels" maxlength="80" size="20" '
        f'value="{esc(q.label or "")}"><datalist id="reviewed-labels">{options}</datalist>'
    )
    choices = [("", "none: the model's confidence"), *((h.name, f"{h.name} ({h.label})") for h in heads)]
    head = '<select name="head" id="f-head">' + "".join(
        f'<option value="{esc(v)}"{" selected" if v == (q.head or "") else ""}>{esc(text)}</option>'
        for v, text in choices
    )
    fields = [
        ("label", label),
        ("custom head", head + "</select>"),
        ("target precision", _number("target", q.target_precision, 5)),
        ("bins", _number("bins", q.bins, 3)),
        ("reviews at least", _number("min_reviews", q.min_reviews, 4)),
    ]
    labelled = "".join(f"<label>{esc(text)} {widget}</label>" for text, widget in fields)
    hidden = f'<input type="hidden" name="model" value="{esc(model)}">'
    form = '<form method="get" action="/calibrate" class="filters">'
    return f"{form}{hidden}{labelled}<button>calibrate</button></form>"


def _reviewed(model: str, reviewed: QueryResult) -> str:
    rows = [
        [link(url("/calibrate", {"model": model, "label": label}), label), n, n_present]
        for label, n, n_present in reviewed.rows
    ]
    return "<h2>Labels with verdicts</h2>" + grid(["label", "reviewed segments", "present"], rows, "labels")


ABOUT = (
    '<p class="note">Precision per score bin from the reviewed segments of one label (the latest verdict '
    "per segment): the model's confidence of the label (0 where it is not among a segment's top labels), "
    "or a custom head's score. The threshold is the lowest score whose reviewed segments scoring at or "
    "above it reach the target precision. The same as <code>audify calibrate OUT --label L</code>.</p>"
)


def calibrate_page(
    model: str,
    query: CalibrationQuery,
    outcome: Outcome | None,
    reviewed: QueryResult,
    heads: Sequence[HeadSummary],
) -> str:
    """The form; with ``outcome``: the calibration (or why there is none); without: the labels to pick."""
    labels = [str(r[0]) for r in reviewed.rows]
    body = [ABOUT, _form(model, query, labels, heads)]
    if outcome is None:
        body.append(_reviewed(model, reviewed))
        return layout("Calibration", "".join(body), model, {"page": "calibrate"})
    c = outcome.calibration
    if c is None:
        body.append(f'<p class="warn" id="problem">{esc(outcome.problem)}</p>')
    else:
        scores = f"custom head {c.head}" if c.head else f"model {c.model}'s confidence"
        body += [
            f"<p><strong>{esc(c.label)}</strong>, scores of {esc(scores)}: {c.n_reviewed} reviewed segments, "
            f"{c.n_present} present.</p>",
            _threshold(c),
            _save_button(outcome),
            f'<div class="figures">{img(precision_figure(c), "precision by score")}</div>',
            _bins(c),
        ]
    body.append(_saved(outcome))
    title = f"Calibration: {query.label}" + (f" (custom head {query.head})" if query.head else "")
    return layout(title, "".join(body), model, {"page": "calibrate"})
