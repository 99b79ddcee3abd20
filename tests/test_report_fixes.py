"""The run report as a new user reads it: segment ids to explain or open, the settings a run used,
timelines of long recordings in label lanes from a bounded number of rows, rounded figures."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from audify_batch.cli.explain import locate_segment
from audify_batch.report.html import format_value
from audify_batch.report.run_report import html_report, settings_html
from audify_batch.report.timeline import (
    OKABE_ITO,
    TIMELINE_BINS,
    TIMELINE_LANES,
    label_colours,
    time_unit,
    timeline_png,
    timeline_rows,
)
from audify_batch.run.config import LabelConfig
from audify_batch.run.host import loader_workers
from audify_batch.store import schema as S
from audify_batch.store.query import connect, fetch_file
from tests.synthetic_output import A_M1, M1, URI_A, recording_id, write_synthetic_output

LONG_MODEL = "fake-long-0.1"
LONG_URI = "file:///archive/long.flac"
LONG_HOURS = 100
LONG_SEGMENT_S = 5.0
LONG_LABELS = tuple(f"label{i:02d}" for i in range(12))  # 8 lanes + "other (4 labels)"
LONG_RUN = "20260101T000000Z-long"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TABLE = re.compile(r"<table>.*?</table>", re.S)
LONG_DECIMALS = re.compile(r"\d\.\d{4,}")


def long_recording_labels(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 label index and confidence per segment: label i about twice as frequent as label i + 1."""
    rng = np.random.default_rng(7)
    weights = 0.5 ** np.arange(len(LONG_LABELS))
    labels = rng.choice(len(LONG_LABELS), size=n, p=weights / weights.sum())
    return labels, rng.uniform(0.05, 1.0, size=n).astype(np.float32)


def write_long_recording(out: Path) -> int:
    """One labeled recording of LONG_HOURS hours in the real schemas, written column-wise (no audio)."""
    n = int(LONG_HOURS * 3600 / LONG_SEGMENT_S)
    labels, confidences = long_recording_labels(n)
    index = np.arange(n)
    rid = recording_id(LONG_URI)
    per_segment = {
        S.RECORDING_ID: pa.array([rid] * n),
        S.URI: pa.array([LONG_URI] * n),
        S.SEGMENT_INDEX: pa.array(index, pa.int32()),
        S.START_S: pa.array(index * LONG_SEGMENT_S),
        S.END_S: pa.array((index + 1) * LONG_SEGMENT_S),
        S.START_SAMPLE: pa.array(index * 80_000),
        S.END_SAMPLE: pa.array((index + 1) * 80_000),
        S.LABELS: pa.array([[LONG_LABELS[i]] for i in labels], pa.list_(pa.string())),
        S.CONFIDENCES: pa.array([[c] for c in confidences], pa.list_(pa.float32())),
        S.EMBEDDING: pa.FixedSizeListArray.from_arrays(pa.array(confidences), 1),
        S.DETECTED: pa.nulls(n, pa.list_(pa.string())),
        S.AUDIOSET_LABELS: pa.nulls(n, pa.list_(pa.string())),
        S.AUDIOSET_SCORES: pa.nulls(n, pa.list_(pa.float32())),
        S.MODEL_NAME: pa.array(["fake-long"] * n),
        S.MODEL_VERSION: pa.array(["0.1"] * n),
        S.CONFIG_HASH: pa.array(["h"] * n),
        S.RUN_ID: pa.array([LONG_RUN] * n),
    }
    name, partition = f"part-{LONG_RUN}-00000.parquet", f"{S.MODEL_PARTITION}={LONG_MODEL}"
    for dataset, file, table in [
        (S.SEGMENTS, name, pa.table(per_segment, schema=S.segments_schema(1))),
        (S.RECORDINGS, name, pa.Table.from_pylist([recording(rid, n)], schema=S.RECORDINGS_SCHEMA)),
        (S.RUNS, f"run-{LONG_RUN}.parquet", pa.Table.from_pylist([run(n)], schema=S.RUNS_SCHEMA)),
    ]:
        (out / dataset / partition).mkdir(parents=True)
        pq.write_table(table, out / dataset / partition / file)
    return n


def run(n: int) -> dict[str, object]:
    used = {"device": "cuda", "precision": "bf16", "workers": 7, "torch_threads": 16}
    return {
        S.RUN_ID: LONG_RUN,
        S.STARTED_AT: T0,
        S.FINISHED_AT: T0 + timedelta(hours=1),
        S.RUN_STATUS: S.RUN_COMPLETED,
        S.CONFIG_JSON: json.dumps({"runtime": {"device": "auto", "precision": "auto"}, "used": used}),
        S.CONFIG_HASH: "h",
        S.MODEL_NAME: "fake-long",
        S.MODEL_VERSION: "0.1",
        S.N_RECORDINGS: 1,
        S.N_LABELED: 1,
        S.N_FAILED: 0,
        S.N_SKIPPED: 0,
        S.N_SEGMENTS: n,
        S.AUDIO_S: n * LONG_SEGMENT_S,
        S.WALL_S: 1234.5678,
    }


def recording(rid: str, n: int) -> dict[str, object]:
    return {
        S.RECORDING_ID: rid,
        S.URI: LONG_URI,
        S.SIZE_BYTES: 10**9,
        S.MTIME_S: 1.7e9,
        S.FINGERPRINT: "fp",
        S.SAMPLE_RATE_HZ: 16_000,
        S.CHANNELS: 1,
        S.DURATION_S: n * LONG_SEGMENT_S,
        S.N_SEGMENTS: n,
        S.STATUS: S.STATUS_LABELED,
        S.ERROR: None,
        S.MODEL_NAME: "fake-long",
        S.MODEL_VERSION: "0.1",
        S.CONFIG_HASH: "h",
        S.RUN_ID: LONG_RUN,
        S.FINISHED_AT: T0 + timedelta(hours=1),
    }


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic OUT of tests/synthetic_output.py: runs rows from before the ``used`` record."""
    return write_synthetic_output(tmp_path_factory.mktemp("synthetic") / "out").out


@pytest.fixture(scope="module")
def long_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    out = tmp_path_factory.mktemp("long") / "out"
    return out, write_long_recording(out)


# 1. Review queues give the segment id `audify explain OUT --segment ID` takes, linked in the app.


def review_tables(html: str) -> list[str]:
    queue = html.split("<h2>Review queue</h2>")[1].split("<h2>")[0]
    return TABLE.findall(queue)


def test_review_queues_give_segment_ids_that_explain_takes(synthetic: Path) -> None:
    html = html_report(synthetic, model=M1)

    tables = review_tables(html)
    assert len(tables) == 2
    for table in tables:
        assert "<th>segment_id</th>" in table and "<a href" not in table
        ids = re.findall(r"<td>([^<]*:\d+)</td>", table)
        assert ids and all(re.fullmatch(r"[0-9a-f]{16}:\d+", i) for i in ids)
        for segment_id in ids[:3]:  # each opens OUT anew
            uri, start_s = locate_segment(str(synthetic), segment_id)
            assert segment_id == f"{recording_id(uri)}:{int(start_s)}"  # 1 s segments from 0 s
    # The least confident segment of M1 is A's segment 5 (0.5).
    assert f"<td>{recording_id(URI_A)}:{A_M1.index(('rain', 0.5))}</td>" in tables[0]


def test_review_queues_link_each_segment_when_given_a_url(synthetic: Path) -> None:
    html = html_report(synthetic, model=M1, segment_url=lambda i: f"segments/{i}?model={M1}&x=<y>")

    for table in review_tables(html):
        link = r'<td><a href="segments/([^"?]+)\?model=([^"&]+)&amp;x=&lt;y&gt;">([^<]+)</a></td>'
        links = re.findall(link, table)
        assert links and all(target == text and model == M1 for target, model, text in links)
        assert len(links) == table.count("<tr>") - 1  # every row, the header aside


# 2. The settings block says what a run used, then what was asked; old run rows still render.


def test_settings_show_what_was_used_first() -> None:
    used = {"device": "cuda:0", "precision": "bf16", "workers": 1, "torch_threads": 16}
    html = settings_html(json.dumps({"runtime": {"device": "auto"}, "used": used}))

    assert "used: device cuda:0, bf16, 1 worker, 16 threads" in html
    assert html.index("used: device") < html.index("asked:") < html.index("&quot;auto&quot;")
    assert "&quot;used&quot;" not in html  # not repeated among what was asked
    used0 = settings_html(json.dumps({"used": used | {"workers": 0, "torch_threads": 1}}))
    assert "0 workers (decoding in the main process), 1 thread" in used0


def test_a_run_row_without_used_settings_still_renders(synthetic: Path) -> None:
    html = html_report(synthetic, model=M1)

    settings = html.split("settings of the latest run")[1].split("<h2>")[0]
    assert "used: not recorded" in settings and "segment_s" in settings
    assert "<h2>Review queue</h2>" in html


def test_the_loaders_workers_never_exceed_the_recordings() -> None:
    config = LabelConfig.of(source="a", out="b")
    cpu = torch.device("cpu")
    assert loader_workers(config, cpu, 1) == 1  # never more workers than recordings
    assert loader_workers(config, cpu, 100) >= 2
    assert loader_workers(LabelConfig.of(source="a", out="b", workers=0), cpu, 100) == 0


# 3. Timelines: one lane per label, a long recording binned in DuckDB.


def test_a_long_recording_gives_a_bounded_timeline(long_out: tuple[Path, int]) -> None:
    out, n = long_out
    con = connect(out)
    try:
        rows = timeline_rows(con, LONG_MODEL, LONG_URI)
        n_detected = fetch_file(
            con, "report_timeline", {"model": LONG_MODEL, "uri": LONG_URI, "lanes": 99, "bins": n}
        )
        png = timeline_png(con, LONG_MODEL, [LONG_URI], label_colours(list(LONG_LABELS)))
    finally:
        con.close()

    assert len(n_detected) == n == 72_000  # unbinned: a row per segment
    assert len(rows) <= (TIMELINE_LANES + 1) * TIMELINE_BINS < n / 7
    lanes = {lane: label for lane, label, *_ in rows.rows}
    assert lanes == {i + 1: LONG_LABELS[i] for i in range(8)} | {9: "other (4 labels)"}
    # Each bin holds the highest confidence of each lane in it, over the whole length.
    labels, confidences = long_recording_labels(n)
    bin_s = n * LONG_SEGMENT_S / TIMELINE_BINS
    bins = np.minimum(np.floor(np.arange(n) * LONG_SEGMENT_S / bin_s), TIMELINE_BINS - 1).astype(int)
    highest = np.full((TIMELINE_LANES + 1, TIMELINE_BINS), -1.0)
    np.maximum.at(highest, (np.minimum(labels, TIMELINE_LANES), bins), confidences)
    expected = [(lane + 1, b) for lane, b in zip(*np.nonzero(highest >= 0), strict=True)]
    assert sorted((lane, round(start_s / bin_s)) for lane, _, start_s, *_ in rows.rows) == expected
    for lane, _, start_s, end_s, confidence in rows.rows:
        assert end_s == pytest.approx(start_s + bin_s)
        assert confidence == pytest.approx(highest[lane - 1, round(start_s / bin_s)])
    assert max(end_s for *_, end_s, _ in rows.rows) == pytest.approx(LONG_HOURS * 3600)
    assert png.startswith(b"\x89PNG")


def test_a_short_recording_has_a_row_per_segment_in_its_lane(synthetic: Path) -> None:
    con = connect(synthetic)
    try:
        rows = timeline_rows(con, M1, URI_A)
    finally:
        con.close()

    expected = sorted(
        (1 if label == "rain" else 2, label, float(i), float(i + 1), confidence)
        for i, (label, confidence) in enumerate(A_M1)
    )
    got = [(lane, label, start, end, pytest.approx(conf)) for lane, label, start, end, conf in rows.rows]
    assert got == expected  # rain (4 segments) in lane 1, dog (3) in lane 2


def test_colours_come_from_a_colour_blind_safe_palette_one_per_label() -> None:
    colours = label_colours([f"l{i}" for i in range(15)])
    assert list(colours.values()) == list(OKABE_ITO) and len(set(OKABE_ITO)) == 8
    assert [time_unit(s)[0] for s in (59.0, 3600.0, 100 * 3600.0)] == ["s", "min", "h"]


def test_the_long_recording_report_renders(long_out: tuple[Path, int]) -> None:
    html = html_report(long_out[0])
    assert "1 recordings labeled, 0 failed, 72000 segments, 100.00 h of audio." in html
    assert "used: device cuda, bf16, 7 workers, 16 threads" in html
    runs = TABLE.findall(html)[0]
    assert '<td class="num">1234.6</td><td class="num">292</td>' in runs  # wall_s, realtime_x
    assert not LONG_DECIMALS.findall(" ".join(TABLE.findall(html)))


# 4. Every number the report shows is rounded, in one place.


def test_numbers_are_rounded_by_their_unit() -> None:
    assert format_value("start_s", 12.04999) == "12.0"
    assert format_value("audio_h", 0.0088) == "0.01"
    assert format_value("realtime_x", 1234.56) == "1235" and format_value("realtime_x", 0.456) == "0.5"
    assert format_value("share_pct", 12.345) == "12.3"
    assert format_value("confidence", 0.600000023841858) == "0.600"
    assert format_value("margin", Decimal("0.12345")) == "0.123"
    assert format_value("n_segments", 7) == "7" and format_value("error", None) == ""
    assert (
        format_value("finished_at", datetime(2026, 1, 1, 10, 0, 5, 123456, tzinfo=UTC))
        == "2026-01-01 10:00:05"
    )


def test_report_tables_show_no_long_decimals(synthetic: Path) -> None:
    html = html_report(synthetic, model=M1)

    tables = " ".join(TABLE.findall(html))
    assert "0.600000" not in html  # float32 confidences would print so unrounded
    assert not LONG_DECIMALS.findall(tables)
    runs = TABLE.findall(html.split("Run provenance")[1])[0]
    header = re.findall(r"<th>([^<]+)</th>", runs)
    first = re.findall(r"<td[^>]*>([^<]*)</td>", runs)[: len(header)]
    row = dict(zip(header, first, strict=True))
    assert row["wall_s"] == "300.0" and row["realtime_x"] == "0.0" and row["audio_h"] == "0.00"
