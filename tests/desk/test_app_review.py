"""The review desk's review tools through FastAPI's TestClient over a real small OUT: calibration,
custom heads, review of any label, queue fallbacks (pages: test_app.py, writes: test_app_writes.py)."""

from __future__ import annotations

import json
import re
from html import escape, unescape
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audify_batch.app.calibration import served_thresholds
from audify_batch.app.data import QUEUE_SIZE
from audify_batch.app.server import AppSettings, create_app
from audify_batch.model.thresholds_file import read_thresholds
from audify_batch.review import queues
from audify_batch.review.calibrate import calibrate, default_thresholds_path
from audify_batch.review.head_apply import apply_head
from audify_batch.review.heads import save_head, train_head
from audify_batch.store import schema as S
from audify_batch.store.annotations import Annotation, AnnotationWriter, Verdict
from audify_batch.store.query import connect
from tests.app_helpers import (
    BASE,
    MODEL,
    WRITE,
    TestClient,
    post,
    segment_links,
    segment_of,
    sql,
    verdicts_on,
)
from tests.synthetic_output import M1, RUN1, T0, Rec, segments_table, write_part, write_run


def write_verdicts(out: Path, verdicts: list[tuple[str, str, Verdict]], annotator: str = "ana") -> None:
    """Verdicts ``(segment_id, label, verdict)`` as a reviewer elsewhere gave them (one append)."""
    annotations = []
    for sid, label, verdict in verdicts:
        ((uri, start_s, end_s),) = sql(
            out,
            "SELECT uri, start_s, end_s FROM segments "
            "WHERE recording_id || ':' || segment_index = getvariable('s')",
            s=sid,
        )
        annotations.append(Annotation(MODEL, sid, uri, start_s, end_s, label, verdict, annotator))
    AnnotationWriter(str(out)).append(annotations)


def scores_of(out: Path, label: str) -> list[tuple[str, float]]:
    """Every segment with the model's confidence of ``label`` (0 outside its top labels), highest first."""
    return [
        (sid, float(score))
        for sid, score in sql(
            out,
            "SELECT recording_id || ':' || segment_index AS sid, "
            "round(coalesce(confidences[list_position(labels, getvariable('l'))], 0)::DOUBLE, 7) AS score "
            "FROM segments ORDER BY score DESC, sid",
            l=label,
        )
    ]


@pytest.fixture(scope="module")
def wind_reviews(out: Path) -> list[tuple[str, float, bool]]:
    """Reviews of 'wind' on 20 segments of distinct scores (the tiny model gives many segments of
    noise the same ones): the 12 scoring highest present, the next 8 absent; highest first."""
    distinct: dict[float, str] = {}
    for sid, score in scores_of(out, "wind"):
        distinct.setdefault(score, sid)
    ranked = list(distinct.items())[:20]
    reviews = [(sid, score, i < 12) for i, (score, sid) in enumerate(ranked)]
    write_verdicts(out, [(sid, "wind", Verdict.PRESENT if p else Verdict.ABSENT) for sid, _, p in reviews])
    return reviews


def test_calibration_page_shows_bins_and_the_threshold(
    client: TestClient, out: Path, wind_reviews: list[tuple[str, float, bool]]
) -> None:
    page = client.get("/calibrate", params={"label": "wind", "target": "0.9"})
    assert page.status_code == 200, page.text
    html = page.text
    assert "20 reviewed segments, 12 present" in html
    bins = re.search(r'<table class="bins">.*?</table>', html, re.S)
    assert bins is not None
    rows = re.findall(
        r"<tr><td>([\d.]+)–([\d.]+)</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>",
        bins.group(0),
    )
    assert len(rows) == 10
    for low, _, n, n_present in rows:  # each review counted in the bin of its score
        in_bin = [
            p for _, score, p in wind_reviews if min(int(score * 10 + 1e-9), 9) == round(float(low) * 10)
        ]
        assert (int(n), int(n_present)) == (len(in_bin), sum(in_bin))
    # Going down the scores: 12 present, then 12 of 13 is 0.923 (reaches 0.9), 12 of 14 is 0.857.
    expected = wind_reviews[12][1]
    assert f"threshold <strong>{expected:.4f}</strong>: precision 0.923" in html
    assert "over 13 reviewed segments" in html
    assert re.search(r'<img alt="precision by score" src="data:image/png;base64,[A-Za-z0-9+/=]{500,}">', html)
    assert 'id="save-threshold"' in html and 'data-label="wind"' in html
    assert 'href="/calibrate?model=tiny-fake-0.1"' in html  # in the navigation
    con = connect(str(out))
    try:
        library = calibrate(con, "wind", MODEL, 0.9)
    finally:
        con.close()
    assert library.threshold is not None and library.threshold.threshold == pytest.approx(expected, abs=1e-6)
    # Too few reviews, and a label nobody reviewed: said on the page, no threshold to save.
    few = client.get("/calibrate", params={"label": "wind", "min_reviews": "50"}).text
    assert "threshold: none for target precision 0.9 (too few reviews" in few and "save-threshold" not in few
    assert (
        "no reviews of label &#x27;engine&#x27;" in client.get("/calibrate", params={"label": "engine"}).text
    )
    assert client.get("/calibrate", params={"label": "wind", "target": "2"}).status_code == 422


def test_saving_the_threshold_writes_the_thresholds_file(
    client: TestClient, out: Path, wind_reviews: list[tuple[str, float, bool]]
) -> None:
    path = default_thresholds_path(out, MODEL)
    body = {
        "model": MODEL,
        "label": "wind",
        "head": None,
        "target_precision": 0.9,
        "bins": 10,
        "min_reviews": 10,
    }
    assert client.post("/api/thresholds", json=body).status_code == 403  # no X-Audify: a cross-site form
    foreign = client.post("/api/thresholds", json=body, headers={**WRITE, "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert not Path(path).exists()
    answer = client.post("/api/thresholds", json=body, headers=WRITE)
    assert answer.status_code == 200, answer.text
    assert answer.json()["path"] == path
    saved = read_thresholds(path)
    assert saved["model"] == MODEL and set(saved["thresholds"]) == {"wind"}
    entry = saved["thresholds"]["wind"]
    assert entry["threshold"] == pytest.approx(wind_reviews[12][1], abs=1e-6)
    assert (entry["n_at_or_above"], entry["n_reviewed"], entry["target_precision"]) == (13, 20, 0.9)
    assert (
        f"saved: threshold {entry['threshold']:.4f} for target 0.9"
        in client.get("/calibrate", params={"label": "wind"}).text
    )
    none = client.post("/api/thresholds", json={**body, "min_reviews": 50}, headers=WRITE)
    assert none.status_code == 422 and "too few reviews" in none.json()["detail"]
    assert (
        client.post("/api/thresholds", json={**body, "target_precision": 0}, headers=WRITE).status_code == 422
    )
    assert (
        client.post("/api/thresholds", json={**body, "model": "other-1.0"}, headers=WRITE).status_code == 404
    )
    assert read_thresholds(path) == saved


def test_overview_links_labels_to_their_calibration(client: TestClient, out: Path) -> None:
    html = client.get("/").text
    for (label,) in sql(out, "SELECT DISTINCT label FROM detections"):
        assert f'href="/calibrate?model=tiny-fake-0.1&amp;label={quote(label)}"' in html


@pytest.fixture(scope="module")
def whistle_head(out: Path) -> dict[str, float]:
    """Custom head 'whistle' (a class the model lacks) trained on 6 present and 6 absent verdicts and
    applied to every segment; its scores by segment id."""
    ids = [sid for sid, _ in scores_of(out, "dog")]
    write_verdicts(
        out,
        [(sid, "whistle", Verdict.PRESENT) for sid in ids[:6]]
        + [(sid, "whistle", Verdict.ABSENT) for sid in ids[-6:]],
    )
    save_head(out, train_head(out, "whistle", presumed_per_positive=1))
    assert apply_head(out, "whistle").n_segments == 72
    con = connect(str(out))  # head_scores is one of the views
    try:
        rows = con.execute("SELECT recording_id || ':' || segment_index, score FROM head_scores").fetchall()
    finally:
        con.close()
    return {sid: float(score) for sid, score in rows}


def test_head_scores_on_the_segment_page_and_the_overview(
    client: TestClient, out: Path, whistle_head: dict[str, float]
) -> None:
    sid = segment_of(out, "noise1.wav", 2)
    html = client.get(f"/segments/{sid}").text
    heads = re.search(r'<table class="heads">.*?</table>', html, re.S)
    assert heads is not None
    assert f'<td>whistle</td><td>whistle</td><td class="num">{whistle_head[sid]:.3f}</td>' in heads.group(0)
    assert f'href="/segments/{sid}?model=tiny-fake-0.1&amp;label=whistle"' in heads.group(0)
    high = sum(score >= 0.5 for score in whistle_head.values())
    overview = client.get("/").text
    row = re.search(r'<table class="heads">.*?</table>', overview, re.S)
    assert row is not None
    link = "/segments?model=tiny-fake-0.1&amp;head=whistle&amp;min_head_score=0.5"
    assert f'<td class="num">72</td><td><a href="{link}">{high}</a></td>' in row.group(0)
    assert 'href="/queues?model=tiny-fake-0.1&amp;label=whistle&amp;head=whistle"' in row.group(0)
    assert 'href="/calibrate?model=tiny-fake-0.1&amp;head=whistle"' in row.group(0)
    html = client.get(f"/segments/{segment_of(out, 'noise0.wav', 0)}").text  # any segment: all are scored
    assert "<h2>Custom heads</h2>" in html


def test_segment_table_filters_by_head_score(client: TestClient, whistle_head: dict[str, float]) -> None:
    page = client.get("/segments", params={"head": "whistle", "min_head_score": "0.5"}).text
    expected = sorted(
        (sid for sid, s in whistle_head.items() if s >= 0.5), key=lambda sid: -whistle_head[sid]
    )
    assert 0 < len(expected) < 72
    ids = segment_links(page)
    assert ids == expected[:50]  # highest score first
    assert f"of {len(expected)}" in page and "<th>whistle score</th>" in page
    assert client.get("/segments", params={"head": "../etc"}).status_code == 422
    assert client.get("/segments", params={"min_head_score": "0.5"}).status_code == 422
    empty = client.get("/segments", params={"head": "nohead"}).text
    assert "no rows" in empty


def test_head_queue_and_a_label_only_a_head_knows(
    client: TestClient, out: Path, whistle_head: dict[str, float]
) -> None:
    con = connect(str(out))
    try:
        expected = [
            i.segment_id for i in queues.stratified_queue(con, MODEL, "whistle", QUEUE_SIZE, head="whistle")
        ]
    finally:
        con.close()
    for params in (
        {"label": "whistle", "head": "whistle"},
        {"label": "whistle"},
    ):  # the head is found by its label
        page = client.get("/queues", params=params).text
        assert segment_links(page) == expected != []
        assert "custom head whistle" in page
    first = client.get(
        f"/segments/{expected[0]}", params={"walk": "label", "label": "whistle", "head": "whistle"}
    )
    assert '<strong id="shown-label">whistle</strong>' in first.text
    assert f"1 / {len(expected)} in Label queue: whistle (custom head whistle)" in first.text
    listed = client.get(f"/segments/{expected[0]}", params={"walk": "list", "head": "whistle", "pos": 0}).text
    assert 'data-label="whistle"' in listed  # a head's table asks about its label


def test_a_heads_scores_are_calibrated_and_saved(
    client: TestClient, out: Path, whistle_head: dict[str, float]
) -> None:
    page = client.get("/calibrate", params={"head": "whistle", "target": "0.5", "min_reviews": "1"}).text
    assert "<strong>whistle</strong>, scores of custom head whistle: 12 reviewed segments, 6 present" in page
    # All 12 reviewed segments together are 6 of 12 present: the lowest score reaches 0.5 at least.
    lowest = min(whistle_head[sid] for sid, label, _ in verdict_rows(out) if label == "whistle")
    assert f"threshold <strong>{lowest:.4f}</strong>" in page
    body = {"model": MODEL, "label": "whistle", "head": "whistle", "target_precision": 0.5, "min_reviews": 1}
    assert client.post("/api/thresholds", json=body, headers=WRITE).status_code == 200
    entry = read_thresholds(default_thresholds_path(out, MODEL))["heads"]["whistle"]
    assert entry["label"] == "whistle" and entry["threshold"] == pytest.approx(lowest, abs=1e-6)


def verdict_rows(out: Path) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in sql(out, "SELECT segment_id, label, verdict FROM annotations")]


def test_any_label_is_the_shown_label_and_w_records_it_absent(client: TestClient, out: Path) -> None:
    sid = segment_of(out, "noise2.wav", 1)
    ((top,),) = sql(
        out,
        "SELECT labels[1] FROM segments WHERE recording_id || ':' || segment_index = getvariable('s')",
        s=sid,
    )
    page = client.get(f"/segments/{sid}", params={"label": "tawny owl"}).text
    shown = re.search(r'data-label="([^"]*)"', page)
    assert shown is not None and unescape(shown.group(1)) == "tawny owl" != top
    assert f"own call: {escape(top)})" in page
    assert 'data-src="/segments/' + sid + '/similar?model=tiny-fake-0.1&amp;label=tawny+owl"' in page
    answer = post(
        client, {"segment_id": sid, "model": MODEL, "label": unescape(shown.group(1)), "verdict": "absent"}
    )
    assert answer.status_code == 200
    assert [r[:3] for r in verdicts_on(out, sid)] == [("tawny owl", "absent", "tester")]
    similar = client.get(f"/segments/{sid}/similar", params={"label": "tawny owl"}).text
    assert similar.count("&amp;label=tawny+owl") == 20  # each similar segment, asked about the same label
    assert client.get(f"/segments/{sid}", params={"label": "bad\nlabel"}).status_code == 422


def test_a_new_class_starts_from_a_segment_and_walks_its_likes(client: TestClient, out: Path) -> None:
    intro = client.get("/queues", params={"label": "tawny owl"})
    assert intro.status_code == 200 and "A new class: tawny owl" in intro.text
    assert '<input name="seed"' in intro.text
    seed = segment_of(out, "long.wav", 3)
    reviewed = segment_of(out, "noise2.wav", 1)  # has a 'tawny owl' verdict (the test before)
    page = client.get("/queues", params={"label": "tawny owl", "seed": seed}).text
    ids = segment_links(page)
    assert ids[0] == seed and reviewed not in ids and len(ids) == len(set(ids)) > 20
    nearest = segment_links(client.get(f"/segments/{seed}/similar").text)
    assert ids[1:20] == [sid for sid in nearest if sid != reviewed][:19]
    html = client.get(
        f"/segments/{ids[1]}", params={"walk": "label", "label": "tawny owl", "seed": seed}
    ).text
    assert '<strong id="shown-label">tawny owl</strong>' in html and "2 / " in html
    assert (
        client.get("/queues", params={"label": "tawny owl", "seed": "0123456789abcdef:0"}).status_code == 404
    )
    index = client.get("/queues").text
    assert '<input name="label" id="queue-label"' in index  # free text, a new class too


def test_uncertain_queue_without_the_thresholds_falls_back(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "out"
    recs = [Rec("file:///archive/t.wav", S.STATUS_LABELED, [("dog", 0.7), ("rain", 0.4), ("wind", 0.9)])]
    write_part(out, M1, RUN1, 0, recs, 8, T0)
    write_run(out, M1, RUN1, T0, recs)
    table = segments_table(M1, RUN1, recs, 8)  # a model with thresholds: detected labels
    detected = pa.array([["dog"], [], ["wind"]], pa.list_(pa.string()))
    path = out / S.SEGMENTS / f"{S.MODEL_PARTITION}={M1}" / f"part-{RUN1}-00000.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index(S.DETECTED), S.DETECTED, detected), path)
    app = create_app(AppSettings(out=str(out), model=str(tiny_model_dir)))
    with TestClient(app, base_url=BASE) as other:
        page = other.get("/queues/uncertain")
        assert page.status_code == 200, page.text
        assert "plain least-confident queue" in page.text and 'class="warn"' in page.text
        ids = segment_links(page.text)
        assert [sid.split(":")[1] for sid in ids] == ["1", "0", "2"]  # 0.4, 0.7, 0.9
        walk = other.get(f"/segments/{ids[0]}", params={"walk": "uncertain"}).text
        assert "1 / 3 in Least confident segments" in walk and 'data-label="rain"' in walk


def test_the_desk_queues_by_the_thresholds_calibrated_in_out(tmp_path: Path) -> None:
    """Nearest-the-threshold queues use OUT's calibrated thresholds where it has them."""
    card = {"dog": 0.5, "rain": 0.4}
    out = str(tmp_path / "out")
    assert served_thresholds(card, out, "m-1.0.0") == card  # nothing calibrated yet
    path = Path(default_thresholds_path(out, "m-1.0.0"))
    path.parent.mkdir(parents=True)
    entries = {"dog": {"threshold": 0.8}, "owl": {"threshold": 0.3}}
    path.write_text(
        json.dumps({"format": "audify-thresholds", "version": 1, "model": "m-1.0.0", "thresholds": entries})
    )
    assert served_thresholds(card, out, "m-1.0.0") == {"dog": 0.8, "rain": 0.4}
    assert served_thresholds({}, out, "m-1.0.0") == {}
