"""The review desk (``audify serve``) through FastAPI's TestClient over a real small OUT.

One archive is labeled once per module with the tiny model: a few noise recordings, a tone,
a broken file and a 5-minute recording (for pagination and for reading a segment by range).
"""

from __future__ import annotations

import io
import re
from dataclasses import replace
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf

from audify_batch.app import media
from audify_batch.app.data import QUEUE_SIZE
from audify_batch.app.server import AppSettings, create_app, load_model
from audify_batch.cli.main import main
from audify_batch.review import queues
from audify_batch.store.query import connect
from tests.app_helpers import (
    BASE,
    LONG_S,
    MODEL,
    TestClient,
    post,
    segment_links,
    segment_of,
    sql,
)


def test_overview_shows_totals_labels_recordings_and_links(client: TestClient, out: Path) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    ((labeled, failed, segments),) = sql(
        out,
        "SELECT count(*) FILTER (status = 'labeled'), count(*) FILTER (status = 'failed'), "
        "sum(n_segments) FROM recordings",
    )
    assert (labeled, failed, segments) == (5, 1, 72)
    totals = re.search(r'<table class="totals">.*?</table>', html, re.S)
    assert totals is not None
    cells = re.findall(r'<td class="num">([\d.]+)</td>', totals.group(0))
    assert cells[:5] == ["6", "5", "1", "72", f"{(6 + 11 + 16 + 12 + LONG_S) / 3600:.3f}"]
    for label, n in sql(out, "SELECT label, count(*) FROM detections GROUP BY label"):
        assert f'detected={label.replace(chr(39), "%27")}"' in html
        assert f'<td class="num">{n}</td>' in html
    for name in ("noise0.wav", "long.wav", "tone.flac", "broken.wav"):
        assert name in html
    assert 'href="/report?model=tiny-fake-0.1"' in html
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere


def test_report_is_served(client: TestClient) -> None:
    page = client.get("/report")
    assert page.status_code == 200
    assert "Run provenance" in page.text and "tiny-fake-0.1" in page.text
    assert re.search(r'<a href="/segments/[0-9a-f]{16}:\d+\?model=tiny-fake-0.1">', page.text)  # queues link


def test_segment_table_pages_in_sql(client: TestClient, out: Path) -> None:
    first = client.get("/segments")
    assert first.status_code == 200
    assert "rows 1–50 of 72" in first.text
    ids = segment_links(first.text)
    assert len(ids) == 50
    second = client.get("/segments", params={"offset": 50})
    assert "rows 51–72 of 72" in second.text
    rest = segment_links(second.text)
    assert len(rest) == 22 and not set(ids) & set(rest)
    expected = sql(
        out, "SELECT recording_id || ':' || segment_index FROM segments ORDER BY uri, segment_index"
    )
    assert ids + rest == [r[0] for r in expected]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"uri": "noise1"}, "uri LIKE '%noise1%'"),
        ({"min_start_s": "100", "max_start_s": "150"}, "start_s BETWEEN 100 AND 150"),
        ({"min_score": "0.3"}, "confidences[1] >= 0.3"),
        ({"max_score": "0.345", "uri": "long"}, "confidences[1] <= 0.345 AND uri LIKE '%long%'"),
    ],
)
def test_segment_filters_match_sql(client: TestClient, out: Path, params: dict[str, str], where: str) -> None:
    ((expected,),) = sql(out, f"SELECT count(*) FROM segments WHERE {where}")
    html = client.get("/segments", params=params).text
    assert expected > 0  # each filter keeps some rows and drops some
    assert re.search(rf"rows 1–{min(expected, 50)} of {expected}\b", html)
    assert len(segment_links(html)) == min(expected, 50)
    ((total,),) = sql(out, "SELECT count(*) FROM segments")
    assert expected < total


def test_label_detected_and_run_filters(client: TestClient, out: Path) -> None:
    ((label, n_label),) = sql(out, "SELECT labels[1], count(*) FROM segments GROUP BY 1 ORDER BY 2 LIMIT 1")
    html = client.get("/segments", params={"label": label}).text
    assert len(segment_links(html)) == min(n_label, 50)
    ((detected, n_detected),) = sql(
        out, "SELECT label, count(*) FROM detections GROUP BY 1 ORDER BY 2 LIMIT 1"
    )
    assert len(segment_links(client.get("/segments", params={"detected": detected}).text)) == min(
        n_detected, 50
    )
    ((run_id,),) = sql(out, "SELECT run_id FROM runs")
    assert "rows 1–50 of 72 " in client.get("/segments", params={"run_id": run_id}).text
    assert "no rows" in client.get("/segments", params={"run_id": "other-run"}).text
    assert client.get("/segments", params={"min_score": "high"}).status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"label": "' OR 1=1 --"},
        {"uri": "%' OR '1'='1"},
        {"detected": "dog'); DROP TABLE segments; --"},
        {"run_id": "x' UNION SELECT * FROM recordings --"},
    ],
)
def test_sql_injection_in_a_filter_finds_nothing(client: TestClient, params: dict[str, str]) -> None:
    page = client.get("/segments", params=params)
    assert page.status_code == 200
    assert "no rows" in page.text and segment_links(page.text) == []
    assert client.get("/segments", params={"model": "x' OR '1'='1"}).status_code == 404


def test_recording_page_has_timeline_and_events(client: TestClient, out: Path) -> None:
    rid = segment_of(out, "noise2.wav", 0).split(":")[0]
    page = client.get(f"/recordings/{rid}")
    assert page.status_code == 200
    assert page.text.count("<rect x=") == 4  # 16 s: four segments on the strip
    events = sql(out, "SELECT label FROM detections WHERE recording_id = getvariable('r')", r=rid)
    assert '<table class="events">' in page.text and events
    assert f'href="/segments/{rid}:3?model=tiny-fake-0.1"' in page.text
    assert client.get("/recordings/0123456789abcdef").status_code == 404


def test_segment_page_shows_labels_audio_figures_and_verdicts(client: TestClient, out: Path) -> None:
    sid = segment_of(out, "noise1.wav", 1)
    page = client.get(f"/segments/{sid}")
    assert page.status_code == 200
    ((labels, confidences),) = sql(
        out,
        "SELECT labels, confidences FROM segments "
        "WHERE recording_id || ':' || segment_index = getvariable('s')",
        s=sid,
    )
    html = page.text
    assert f'data-label="{labels[0]}"'.replace("'", "&#x27;") in html  # no thresholds: the top-1 is shown
    for label, confidence in zip(labels, confidences, strict=True):
        assert f"<td>{label}</td>".replace("'", "&#x27;") in html and f"{confidence:.3f}" in html
    assert f'<audio id="player" controls preload="auto" src="/audio/{sid}?model=tiny-fake-0.1">' in html
    for name in ("log_mel", "gradcam", "waveform", "top_k"):
        assert f'data-src="/figures/{sid}/{name}.png?model=tiny-fake-0.1"' in html  # once the audio is in
    png = client.get(f"/figures/{sid}/gradcam.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert client.get(f"/figures/{sid}/secret.png").status_code == 404
    assert "http://" not in html and "https://" not in html


def test_figures_of_another_model_say_so(out: Path, tiny_model_dir: Path) -> None:
    network, card = load_model(str(tiny_model_dir))
    app = create_app(AppSettings(out=str(out)), loaded=(network, replace(card, version="9.9")))
    sid = segment_of(out, "noise0.wav", 0)
    with TestClient(app, base_url=BASE) as other:
        html = other.get(f"/segments/{sid}").text
        assert "These figures come from the loaded model <code>tiny-fake-9.9</code>" in html
        assert other.get(f"/figures/{sid}/log_mel.png").content.startswith(b"\x89PNG")


def test_unknown_or_malformed_segments_are_404(client: TestClient) -> None:
    for sid in ("0123456789abcdef:0", "not-an-id", "..%2F..%2Fetc%2Fpasswd"):
        assert client.get(f"/segments/{sid}").status_code == 404
        assert client.get(f"/audio/{sid}").status_code == 404


def test_similar_segments_are_listed_and_playable(client: TestClient, out: Path) -> None:
    sid = segment_of(out, "long.wav", 7)
    html = client.get(f"/segments/{sid}/similar").text
    rows = segment_links(html)
    assert len(rows) == 20 and sid not in rows
    assert html.count('preload="none"') == 20
    rid, index = sid.split(":")
    ((uri,),) = sql(out, "SELECT uri FROM recordings WHERE recording_id = getvariable('r')", r=rid)
    nearest = sql(
        out,
        "SELECT s.recording_id || ':' || s.segment_index FROM ("
        "  SELECT * FROM embeddings WHERE uri = getvariable('u') AND segment_index = getvariable('i')) AS q "
        "JOIN segments AS s ON NOT (s.uri = q.uri AND s.segment_index = q.segment_index) "
        "ORDER BY array_cosine_similarity(s.embedding, q.embedding) DESC, s.uri, s.segment_index LIMIT 20",
        u=uri,
        i=int(index),
    )
    assert rows == [r[0] for r in nearest]


class CountingFile:
    """A file object that counts the bytes read through it."""

    def __init__(self, inner: Any, counter: list[int]) -> None:
        self.inner, self.counter = inner, counter

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.counter[0] += len(data)
        return bytes(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self.inner.tell())

    def __enter__(self) -> CountingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.close()


def test_audio_is_the_segment_cut_with_range_reads(
    client: TestClient, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = [0]
    opener = media.open_source
    monkeypatch.setattr(media, "open_source", lambda uri: CountingFile(opener(uri), counter))
    sid = segment_of(out, "long.wav", 31)
    answer = client.get(f"/audio/{sid}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "audio/wav"
    clip, rate_hz = sf.read(io.BytesIO(answer.content), dtype="int16")
    assert rate_hz == 16_000 and len(clip) / rate_hz == pytest.approx(5.0)
    source, _ = sf.read(
        str(out.parent / "archive" / "long.wav"), start=155 * 16_000, stop=160 * 16_000, dtype="int16"
    )
    np.testing.assert_array_equal(clip, source)
    size = (out.parent / "archive" / "long.wav").stat().st_size
    assert 0 < counter[0] < size / 20  # the 5 s and the header, not the 300 s


def test_queue_pages_list_what_review_queues_return(client: TestClient, out: Path) -> None:
    con = connect(str(out))
    try:
        expected = {
            "/queues/uncertain": queues.uncertain_queue(con, MODEL, QUEUE_SIZE),
            "/queues/near-tie": queues.near_tie_queue(con, MODEL, QUEUE_SIZE),
            "/queues?label=dog": queues.stratified_queue(con, MODEL, "dog", QUEUE_SIZE),
        }
    finally:
        con.close()
    for path, items in expected.items():
        page = client.get(path)
        assert page.status_code == 200
        assert segment_links(page.text) == [item.segment_id for item in items] != []
    index = client.get("/queues").text
    for (label,) in sql(out, "SELECT DISTINCT label FROM labels"):
        assert f'href="/queues?model=tiny-fake-0.1&amp;label={quote(label)}"' in index


def test_a_queue_walks_on_as_verdicts_come_in(client: TestClient, out: Path) -> None:
    ids = segment_links(client.get("/queues/near-tie").text)
    walk = "?model=tiny-fake-0.1&amp;walk=near-tie"
    page = client.get(f"/segments/{ids[1]}", params={"walk": "near-tie"}).text
    assert f'data-next="/segments/{ids[2]}{walk}"' in page
    assert f'data-prev="/segments/{ids[0]}{walk}"' in page
    assert f"2 / {len(ids)} in Near ties" in page
    shown = re.search(r'data-label="([^"]*)"', page)
    assert shown is not None
    answer = post(
        client,
        {"segment_id": ids[1], "model": MODEL, "label": unescape(shown.group(1)), "verdict": "present"},
    )
    assert answer.status_code == 200
    after = client.get(f"/segments/{ids[2]}", params={"walk": "near-tie"}).text
    assert f'data-prev="/segments/{ids[0]}{walk}"' in after  # the reviewed one left the queue
    assert f"2 / {len(ids) - 1} in Near ties" in after
    done = client.get(f"/segments/{ids[1]}", params={"walk": "near-tie"}).text
    assert "no longer in Near ties" in done and f'data-next="/segments/{ids[0]}{walk}"' in done


def test_a_filtered_list_walks_by_position(client: TestClient, out: Path) -> None:
    ids = segment_links(client.get("/segments", params={"uri": "long"}).text)
    query = {"walk": "list", "uri": "long", "pos": 49}
    page = client.get(f"/segments/{ids[49]}", params=query).text
    assert "50 / 60 in filtered segments" in page
    assert (
        f'data-prev="/segments/{ids[48]}?model=tiny-fake-0.1&amp;walk=list&amp;uri=long&amp;pos=48"' in page
    )
    ((after,),) = sql(
        out,
        "SELECT recording_id || ':' || segment_index FROM segments "
        "WHERE uri LIKE '%long%' AND segment_index = 50",
    )
    assert f'data-next="/segments/{after}?model=tiny-fake-0.1&amp;walk=list&amp;uri=long&amp;pos=50"' in page
    assert client.get(f"/segments/{ids[0]}", params={"walk": "nowhere"}).status_code == 422


def test_cli_serve_prints_the_url_and_refuses_a_wrong_out(
    out: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from audify_batch.cli import serve

    served = []
    monkeypatch.setattr(serve, "serve_app", lambda app, sock: served.append(sock.getsockname()))
    assert main(["serve", str(out), "--port", "0", "--model", str(tiny_model_dir), "--annotator", "ann"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"audify serve: http://127.0.0.1:{served[0][1]}/ (token not needed on localhost)"
    assert main(["serve", str(tmp_path / "missing"), "--port", "0", "--model", str(tiny_model_dir)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("audify: error:") and len(error.strip().splitlines()) == 1


# Calibration, custom heads, any label, and the uncertain queue without thresholds.
