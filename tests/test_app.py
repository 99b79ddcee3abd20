"""The review desk (``audify serve``) through FastAPI's TestClient over a real small OUT.

One archive is labeled once per module with the tiny model: a few noise recordings, a tone,
a broken file and a 5-minute recording (for pagination and for reading a segment by range).
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import replace
from html import escape, unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audify_batch.app import media
from audify_batch.app.calibration import served_thresholds
from audify_batch.app.data import QUEUE_SIZE
from audify_batch.app.server import AppSettings, create_app, load_model
from audify_batch.cli.main import main
from audify_batch.model.thresholds_file import read_thresholds
from audify_batch.review import queues
from audify_batch.review.calibrate import calibrate, default_thresholds_path
from audify_batch.review.head_apply import apply_head
from audify_batch.review.heads import save_head, train_head
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store import schema as S
from audify_batch.store.annotations import Annotation, AnnotationWriter, Verdict
from audify_batch.store.query import connect, run_sql
from tests.conftest import write_noise, write_tone
from tests.synthetic_output import M1, RUN1, T0, Rec, segments_table, write_part, write_run

with warnings.catch_warnings():  # starlette's note that httpx2 is the newer client
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

LONG_S = 300.0
MODEL = "tiny-fake-0.1"
BASE = "http://127.0.0.1"
WRITE = {"X-Audify": "1"}


def label_small_archive(root: Path, model_dir: Path) -> Path:
    """OUT of a small archive labeled with ``model_dir``: 72 segments in 5 recordings, 1 failure."""
    archive = root / "archive"
    archive.mkdir()
    for i, seconds in enumerate((6.0, 11.0, 16.0)):
        write_noise(archive / f"noise{i}.wav", seconds, seed=i)
    write_tone(archive / "tone.flac", 12.0, 22_050)
    write_noise(archive / "long.wav", LONG_S, seed=9)
    (archive / "broken.wav").write_bytes(b"RIFF....not audio")
    out = root / "out"
    label_archive(LabelConfig.of(source=str(archive), out=str(out), model_dir=str(model_dir), workers=0))
    return out


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return label_small_archive(tmp_path_factory.mktemp("desk"), tiny_model_dir)


@pytest.fixture(scope="module")
def client(out: Path, tiny_model_dir: Path) -> Iterator[TestClient]:
    app = create_app(AppSettings(out=str(out), model=str(tiny_model_dir), annotator="tester"))
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def sql(out: Path, query: str, **params: Any) -> list[tuple[Any, ...]]:
    return list(run_sql(str(out), query, params).rows)


def segment_of(out: Path, name: str, index: int) -> str:
    rows = sql(out, "SELECT recording_id FROM recordings WHERE uri LIKE '%/' || getvariable('n')", n=name)
    return f"{rows[0][0]}:{index}"


def segment_links(html: str) -> list[str]:
    return re.findall(r'<a href="/segments/([0-9a-f]{16}:\d+)[^"]*" class="segment">', html)


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


def post(client: TestClient, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return client.post("/api/annotations", json=body, headers=WRITE if headers is None else headers)


def verdicts_on(out: Path, sid: str) -> list[tuple[Any, ...]]:
    return sql(
        out,
        "SELECT label, verdict, annotator, n_verdicts, uri, start_s, end_s FROM annotations "
        "WHERE segment_id = getvariable('s') ORDER BY label",
        s=sid,
    )


def test_a_verdict_is_written_and_a_second_one_supersedes_it(client: TestClient, out: Path) -> None:
    sid = segment_of(out, "noise0.wav", 0)
    ((uri, start_s, end_s),) = sql(
        out,
        "SELECT uri, start_s, end_s FROM segments "
        "WHERE recording_id || ':' || segment_index = getvariable('s')",
        s=sid,
    )
    first = post(client, {"segment_id": sid, "model": MODEL, "label": "dog", "verdict": "present"})
    assert first.status_code == 200, first.text
    assert first.json()["written"][0]["verdict"] == "present"
    assert verdicts_on(out, sid) == [("dog", "present", "tester", 1, uri, start_s, end_s)]
    assert (
        post(client, {"segment_id": sid, "model": MODEL, "label": " dog ", "verdict": "absent"}).status_code
        == 200
    )
    assert verdicts_on(out, sid) == [("dog", "absent", "tester", 2, uri, start_s, end_s)]
    page = client.get(f"/segments/{sid}").text
    assert "<td>absent</td><td>tester</td>" in page


def test_other_label_is_absent_plus_present_in_one_file(client: TestClient, out: Path) -> None:
    sid = segment_of(out, "noise1.wav", 0)
    answer = post(
        client,
        {"segment_id": sid, "model": MODEL, "label": "rain", "verdict": "absent", "other_label": "chainsaw"},
    )
    assert answer.status_code == 200, answer.text
    assert [r[:2] for r in verdicts_on(out, sid)] == [("chainsaw", "present"), ("rain", "absent")]


@pytest.mark.parametrize(
    "change",
    [
        {"verdict": "maybe"},
        {"label": ""},
        {"label": "x" * 81},
        {"label": "bad\nlabel"},
        {"segment_id": "zz:1"},
        {"segment_id": "0123456789abcdef:1234567890"},
        {"uri": "/etc/passwd"},  # where the segment lies is not the client's to say
        {"other_label": "rain"},  # with 'present'
        {"model": ""},
    ],
)
def test_invalid_fields_are_422(client: TestClient, out: Path, change: dict[str, Any]) -> None:
    body = {
        "segment_id": segment_of(out, "noise2.wav", 2),
        "model": MODEL,
        "label": "dog",
        "verdict": "present",
    }
    answer = post(client, {**body, **change})
    assert answer.status_code == 422, answer.text
    assert verdicts_on(out, body["segment_id"]) == []


def test_oversize_unknown_and_cross_site_writes_are_refused(client: TestClient, out: Path) -> None:
    sid = segment_of(out, "noise2.wav", 3)
    body = {"segment_id": sid, "model": MODEL, "label": "dog", "verdict": "present"}
    big = client.post("/api/annotations", content=b'{"label": "' + b"x" * 17_000 + b'"}', headers=WRITE)
    assert big.status_code == 413
    assert post(client, {**body, "segment_id": "0123456789abcdef:0"}).status_code == 404
    assert post(client, {**body, "model": "other-model-1.0"}).status_code == 404
    assert post(client, body, headers={}).status_code == 403  # no X-Audify: a cross-site form
    assert post(client, body, headers={**WRITE, "Origin": "http://evil.example"}).status_code == 403
    assert verdicts_on(out, sid) == []
    assert post(client, body, headers={**WRITE, "Origin": BASE}).status_code == 200


def test_a_foreign_host_header_is_refused(client: TestClient) -> None:
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    assert client.get("/", headers={"Host": "127.0.0.1.evil.example"}).status_code == 400


def test_other_hosts_need_the_token(out: Path, tiny_model_dir: Path) -> None:
    app = create_app(
        AppSettings(out=str(out), model=str(tiny_model_dir), host="0.0.0.0", token="s3cret-token")
    )
    with TestClient(app, base_url="http://desk.example") as remote:
        assert remote.get("/").status_code == 401
        assert remote.get("/", params={"token": "wrong"}).status_code == 401
        assert remote.get("/", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        first = remote.get(
            "/segments", params={"token": "s3cret-token", "offset": "0"}, follow_redirects=False
        )
        assert first.status_code == 303 and first.headers["location"] == "/segments?offset=0"
        cookie = first.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert remote.get("/segments").status_code == 200  # the cookie from now on


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
