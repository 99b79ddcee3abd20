"""Partial recordings (cut short, labeled as far as readable) are counted and shown: in the HTML run
report, the text report, a batch's summary, and the fake sink's skip set as in the real one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from audify_batch.report.run_report import html_report
from audify_batch.run.batches import summarize_batch
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store import schema as S
from audify_batch.store.query import read_sql, run_sql, text_report
from audify_batch.store.sink import FileKey, ParquetSink
from tests.archive_builders import truncated_wav
from tests.conftest import write_noise
from tests.fakes import FAKE_EMBEDDING_DIM, InMemorySink, fake_card

MODEL = "tiny-fake-0.1"
REASON = "truncated: 15.0 s of 30.0 s declared"


@pytest.fixture(scope="module")
def labeled(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """Two whole recordings (6 s, 11 s), one cut short (15 s of 30 s readable), one broken."""
    root = tmp_path_factory.mktemp("partial")
    archive, out = root / "archive", root / "out"
    archive.mkdir()
    write_noise(archive / "whole6.wav", 6.0, seed=1)
    write_noise(archive / "whole11.wav", 11.0, seed=2)
    truncated_wav(archive / "cut.wav")
    (archive / "broken.wav").write_bytes(b"RIFF....not audio")
    config = LabelConfig.of(
        source=str(archive), out=str(out), model_dir=str(tiny_model_dir), workers=0, batch_id="b1"
    )
    summary = label_archive(config)
    assert (summary.n_labeled, summary.n_partial, summary.n_failed) == (3, 1, 1)
    return out


def section(report: str, title: str) -> str:
    return report.split(f"== {title} ==\n")[1].split("\n\n")[0]


def test_the_html_report_counts_and_lists_partial_recordings(labeled: Path) -> None:
    html = html_report(labeled)

    # 2 + 3 segments of the whole ones (6 s, 11 s), 3 of the 15 readable seconds; 32 s of audio
    assert f"3 recordings labeled (1 partial: cut short), 1 failed, 8 segments, {32 / 3600:.2f} h" in html
    assert "Partial recordings (1)" in html
    partial = html.split("Partial recordings (1)")[1].split("<h2>")[0]
    assert "cut.wav" in partial and REASON in partial and "whole6.wav" not in partial
    assert "Failures (1)" in html


def test_the_run_report_runs_table_says_how_many_were_partial(labeled: Path) -> None:
    result = run_sql(str(labeled), read_sql("report_runs"), {"model": MODEL})

    (run,) = result.records()
    assert (run["n_labeled"], run["n_partial"], run["n_failed"]) == (3, 1, 1)


def test_the_text_report_counts_and_lists_partial_recordings(labeled: Path) -> None:
    report = text_report(labeled)

    header, _, row = section(report, "Recordings (current state)").splitlines()
    assert header.split() == ["model", "labeled", "partial", "failed", "segments", "audio_s"]
    assert row.split()[:5] == [MODEL, "3", "1", "1", "8"]
    assert float(row.split()[5]) == pytest.approx(32.0, abs=0.01)
    partial = section(report, "Partial recordings (current)")
    assert "cut.wav" in partial and REASON in partial and "whole" not in partial
    assert "n_partial" in section(report, "Runs").splitlines()[0].split()
    (run,) = run_sql(str(labeled), read_sql("text_runs")).records()
    assert (run["n_labeled"], run["n_partial"], run["n_failed"]) == (3, 1, 1)


def test_a_report_of_an_out_without_partial_recordings_shows_none(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    write_noise(archive / "whole.wav", 6.0)
    label_archive(LabelConfig.of(source=str(archive), out=str(out), model_dir=str(tiny_model_dir), workers=0))

    html = html_report(out)
    assert "1 recordings labeled, 0 failed" in html and "Partial recordings" not in html
    assert section(text_report(out), "Partial recordings (current)").endswith("(no rows)")


def test_a_batch_summary_counts_partial_recordings(labeled: Path, tiny_model_dir: Path) -> None:
    summary = summarize_batch(str(labeled), str(tiny_model_dir), "b1", wall_s=1.0)

    assert (summary.n_recordings, summary.n_labeled, summary.n_partial, summary.n_failed) == (4, 3, 1, 1)
    assert summary.n_segments == 8 and summary.audio_s == pytest.approx(32.0, abs=0.01)
    ((uri, reason),) = summary.warnings
    assert Path(uri).name == "cut.wav" and reason == REASON


# The fake sink's skip set is the real one's: the same parts give the same keys.

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def recording_row(uri: str, status: str, run_id: str, minute: int, **fields: Any) -> dict[str, Any]:
    n_segments = 1 if status in ("labeled", "partial") else 0
    row = {
        S.RECORDING_ID: f"id-{uri}",
        S.URI: uri,
        S.SIZE_BYTES: 100,
        S.MTIME_S: 1.0,
        S.FINGERPRINT: f"print-{uri}-{run_id}",
        S.SAMPLE_RATE_HZ: 16_000,
        S.CHANNELS: 1,
        S.DURATION_S: 1.0,
        S.N_SEGMENTS: n_segments,
        S.STATUS: status,
        S.ERROR: "truncated" if status == "partial" else None,
        S.MODEL_NAME: "fake-loudness",
        S.MODEL_VERSION: "0.0",
        S.CONFIG_HASH: "h1",
        S.RUN_ID: run_id,
        S.FINISHED_AT: T0 + timedelta(minutes=minute),
    }
    return {**row, **fields}


def segment_rows(rows: list[dict[str, Any]]) -> pa.Table:
    """One segment row per segment the recordings rows claim."""
    schema = S.segments_schema(FAKE_EMBEDDING_DIM)
    segments = [
        {
            **{f.name: None for f in schema},
            S.RECORDING_ID: row[S.RECORDING_ID],
            S.URI: row[S.URI],
            S.SEGMENT_INDEX: i,
            S.START_S: float(i),
            S.END_S: float(i + 1),
            S.START_SAMPLE: i,
            S.END_SAMPLE: i + 1,
            S.LABELS: ["quiet"],
            S.CONFIDENCES: [0.5],
            S.EMBEDDING: [0.0] * FAKE_EMBEDDING_DIM,
            S.MODEL_NAME: row[S.MODEL_NAME],
            S.MODEL_VERSION: row[S.MODEL_VERSION],
            S.CONFIG_HASH: row[S.CONFIG_HASH],
            S.RUN_ID: row[S.RUN_ID],
        }
        for row in rows
        for i in range(row[S.N_SEGMENTS])
    ]
    return pa.Table.from_pylist(segments, schema=schema)


def parts() -> list[tuple[pa.Table, pa.Table]]:
    """(segments, recordings) parts in commit order, one case per uri."""
    committed = [
        [
            recording_row("labeled", "labeled", "r1", 1),
            recording_row("partial", "partial", "r1", 1),
            recording_row("then-failed", "labeled", "r1", 1),
            recording_row("other-settings", "labeled", "r1", 1, **{S.CONFIG_HASH: "h2"}),
            recording_row("then-skipped", "partial", "r1", 1),
        ],
        [
            recording_row("then-failed", "failed", "r2", 2),
            recording_row("then-skipped", "skipped", "r2", 2),
        ],
    ]
    tables = [
        (segment_rows(rows), pa.Table.from_pylist(rows, schema=S.RECORDINGS_SCHEMA)) for rows in committed
    ]
    # A labeled row whose segments part lost its rows is no commit: the earlier partial row stands.
    lost = recording_row("partial", "labeled", "r3", 3)
    tables.append((segment_rows([]), pa.Table.from_pylist([lost], schema=S.RECORDINGS_SCHEMA)))
    return tables


def test_the_fake_sinks_skip_set_is_the_real_ones(tmp_path: Path) -> None:
    card = fake_card()
    real = ParquetSink(str(tmp_path / "out"), card.name, card.version, "r1")
    fake = InMemorySink()
    for segments, recordings in parts():
        real.write_part(segments, recordings)
        fake.write_part(segments, recordings)

    keys = fake.labeled_keys("h1")

    assert keys == real.labeled_keys("h1")
    assert keys == {
        uri: FileKey(uri, 100, 1.0, f"print-{uri}-r1") for uri in ("labeled", "partial", "then-skipped")
    }
    assert (
        fake.labeled_keys("h2")
        == real.labeled_keys("h2")
        == {"other-settings": FileKey("other-settings", 100, 1.0, "print-other-settings-r1")}
    )
