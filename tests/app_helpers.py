"""Shared by the review desk's tests: a small labeled OUT, a test client, and small queries."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from audify_batch.app.server import AppSettings, create_app
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store.query import run_sql
from tests.conftest import write_noise, write_tone

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


@contextmanager
def desk_client(out: Path, model_dir: Path) -> Iterator[TestClient]:
    """The desk over ``out`` serving ``model_dir``, through FastAPI's TestClient."""
    app = create_app(AppSettings(out=str(out), model=str(model_dir), annotator="tester"))
    with TestClient(app, base_url=BASE) as test_client:
        yield test_client


def sql(out: Path, query: str, **params: Any) -> list[tuple[Any, ...]]:
    return list(run_sql(str(out), query, params).rows)


def segment_of(out: Path, name: str, index: int) -> str:
    rows = sql(out, "SELECT recording_id FROM recordings WHERE uri LIKE '%/' || getvariable('n')", n=name)
    return f"{rows[0][0]}:{index}"


def segment_links(html: str) -> list[str]:
    return re.findall(r'<a href="/segments/([0-9a-f]{16}:\d+)[^"]*" class="segment">', html)


def post(client: TestClient, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return client.post("/api/annotations", json=body, headers=WRITE if headers is None else headers)


def verdicts_on(out: Path, sid: str) -> list[tuple[Any, ...]]:
    return sql(
        out,
        "SELECT label, verdict, annotator, n_verdicts, uri, start_s, end_s FROM annotations "
        "WHERE segment_id = getvariable('s') ORDER BY label",
        s=sid,
    )
