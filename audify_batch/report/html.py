"""Self-contained HTML pages: inline CSS, images embedded as data URIs, no network needed.

Every page carries a tiny check that sets ``data-images-ok`` on ``<body>``
once every image has loaded (used by the browser test) and nothing else.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from matplotlib.figure import Figure

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; } .note { color: #666; font-size: 0.85em; }
code { background: #f4f4f4; padding: 0 3px; }
.used { font-weight: 600; }
"""
IMAGE_CHECK = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.every(function (im) { return im.complete && im.naturalWidth > 0; });
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-images-ok", ok ? "yes" : "no");
});
"""


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")  # Agg, no pyplot state
    return buffer.getvalue()


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def esc(value: Any) -> str:
    return html.escape(str(value))


@dataclass(frozen=True)
class Link:
    """A table cell that links: ``text`` shown, ``href`` the (relative) URL it goes to."""

    text: str
    href: str


def _decimals(column: str, value: float) -> int:
    if column.endswith("_s"):
        return 1  # seconds
    if column.endswith("_h"):
        return 2  # hours
    if column.endswith("_x"):
        return 0 if abs(value) >= 10 else 1  # real-time factors: whole, a decimal below 10
    if column.endswith("_pct"):
        return 1  # percentages
    return 3  # confidences, margins, other fractions


def format_value(column: str, value: Any) -> str:
    """A value of ``column`` as the pages show it: the one place their numbers are rounded.

    The unit comes from the name: seconds (``*_s``) to 0.1 s, hours (``*_h``) to 0.01 h,
    real-time factors (``*_x``) whole (to 0.1 below 10), percentages (``*_pct``) to 0.1;
    other floats (confidences, margins) to 3 decimals. Times to the second.
    """
    if value is None:
        return ""
    if isinstance(value, float | Decimal):
        return f"{value:.{_decimals(column, float(value))}f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _cell(column: str, value: Any) -> str:
    if isinstance(value, Link):
        return f'<td><a href="{esc(value.href)}">{esc(value.text)}</a></td>'
    numeric = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    opening = '<td class="num">' if numeric else "<td>"
    return f"{opening}{esc(format_value(column, value))}</td>"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], more: int = 0) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(_cell(c, v) for c, v in zip(columns, row, strict=True)) + "</tr>" for row in rows
    )
    note = f'<p class="note">… and {more} more</p>' if more > 0 else ""
    if not rows:
        return '<p class="note">none</p>'
    return f"<table><tr>{head}</tr>{body}</table>{note}"


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style><script>{IMAGE_CHECK}</script></head>"
        f"<body><h1>{esc(title)}</h1>{body}</body></html>\n"
    )
