"""The review desk's one write, verdicts, and its guards (token, Host, Origin, body size), through
FastAPI's TestClient over a real small OUT (pages and queues: test_app.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from audify_batch.app.server import AppSettings, create_app
from audify_batch.store.annotations import Annotation, AnnotationWriter, Verdict
from audify_batch.store.query import connect, fetch_file
from tests.app_helpers import (
    BASE,
    MODEL,
    WRITE,
    TestClient,
    post,
    segment_of,
    sql,
    verdicts_on,
)


def span_of(out: Path, sid: str) -> tuple[str, float, float]:
    """The uri, start_s and end_s of segment ``sid``."""
    ((uri, start_s, end_s),) = sql(
        out,
        "SELECT uri, start_s, end_s FROM segments "
        "WHERE recording_id || ':' || segment_index = getvariable('s')",
        s=sid,
    )
    return uri, start_s, end_s


def test_a_verdict_is_written_and_a_second_one_supersedes_it(client: TestClient, out: Path) -> None:
    sid = segment_of(out, "noise0.wav", 0)
    uri, start_s, end_s = span_of(out, sid)
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


def test_a_verdict_on_an_older_window_is_not_shown_as_this_segments(client: TestClient, out: Path) -> None:
    """Labeled again with another hop, segment index 1 covers other audio: a verdict given on the
    old window neither shows on its page nor counts it reviewed."""
    sid = segment_of(out, "noise2.wav", 1)
    uri, start_s, end_s = span_of(out, sid)
    old = Annotation(MODEL, sid, uri, start_s + 2.5, end_s + 2.5, "rain", Verdict.PRESENT, "old-window")
    AnnotationWriter(str(out)).append([old])
    assert "old-window" not in client.get(f"/segments/{sid}").text
    con = connect(out)
    try:
        reviewed = fetch_file(con, "app_label_reviewed", {"model": MODEL, "label": "rain"}).column(
            "segment_id"
        )
    finally:
        con.close()
    assert sid not in reviewed
    same = Annotation(MODEL, sid, uri, start_s, end_s, "rain", Verdict.ABSENT, "this-window")
    AnnotationWriter(str(out)).append([same])
    assert "<td>absent</td><td>this-window</td>" in client.get(f"/segments/{sid}").text
