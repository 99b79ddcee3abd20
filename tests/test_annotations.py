"""Reviewers' verdicts: validated records, one new file per acknowledged append, the latest verdict wins."""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from audify_batch.store.annotations import (
    ANNOTATIONS,
    Annotation,
    AnnotationWriter,
    Verdict,
    clean_label,
    parse_segment_id,
)
from audify_batch.store.query import run_sql
from tests.synthetic_output import M1, URI_A, recording_id, write_synthetic_output

SEGMENT = f"{recording_id(URI_A)}:2"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _verdict(label: str, verdict: Verdict, at: datetime, segment: str = SEGMENT, **kw: object) -> Annotation:
    return Annotation(M1, segment, URI_A, 10.0, 15.0, label, verdict, annotated_at=at, **kw)  # type: ignore[arg-type]


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    write_synthetic_output(tmp_path / "out")
    return tmp_path / "out"


def test_the_latest_verdict_per_segment_and_label_wins(out: Path) -> None:
    writer = AnnotationWriter(str(out))
    writer.append([_verdict("dog", Verdict.PRESENT, T0), _verdict("rain", Verdict.ABSENT, T0)])
    writer.append([_verdict("dog", Verdict.ABSENT, T0 + timedelta(minutes=1), annotator="ana")])
    rows = run_sql(
        out, "SELECT segment_id, label, verdict, annotator, n_verdicts FROM annotations ORDER BY label"
    ).rows
    assert rows == ((SEGMENT, "dog", "absent", "ana", 2), (SEGMENT, "rain", "absent", "reviewer", 1))
    assert run_sql(out, "SELECT count(*) FROM annotation_history").rows == ((3,),)


def test_an_out_without_annotations_has_empty_views(out: Path) -> None:
    assert run_sql(out, "SELECT count(*) FROM annotations").rows == ((0,),)
    assert "label" in run_sql(out, "FROM annotation_history").columns


def test_each_append_is_a_new_file_and_nothing_is_rewritten(out: Path) -> None:
    a, b = AnnotationWriter(str(out)), AnnotationWriter(str(out))  # two servers on one OUT
    first = a.append([_verdict("dog", Verdict.PRESENT, T0)])
    before = Path(first).read_bytes()
    b.append([_verdict("dog", Verdict.ABSENT, T0 + timedelta(seconds=1))])
    a.append([_verdict("rain", Verdict.PRESENT, T0 + timedelta(seconds=2))])
    files = sorted((out / ANNOTATIONS).iterdir())
    assert len(files) == 3 and all(f.suffix == ".parquet" for f in files)
    assert Path(first).read_bytes() == before


def _append_then_die(out: str, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    AnnotationWriter(out).append([_verdict("dog", Verdict.PRESENT, T0)])
    ready.set()
    signal.pause()


def test_kill_9_after_the_acknowledgement_loses_nothing(out: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_append_then_die, args=(str(out), ready))
    proc.start()
    assert ready.wait(60)
    os.kill(proc.pid or 0, signal.SIGKILL)
    proc.join()
    assert run_sql(out, "SELECT label, verdict FROM annotations").rows == (("dog", "present"),)


@pytest.mark.parametrize(
    "change",
    [
        {"segment_id": "../../etc/passwd:1"},
        {"segment_id": "abc:1"},
        {"label": ""},
        {"label": "x" * 81},
        {"label": "dog\n"},
        {"label": "a\x00b"},
        {"annotator": ""},
        {"annotator": "x" * 65},
        {"verdict": "maybe"},
        {"start_s": 5.0, "end_s": 5.0},
        {"model": ""},
    ],
)
def test_bad_fields_are_refused(change: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "model": M1,
        "segment_id": SEGMENT,
        "uri": URI_A,
        "start_s": 10.0,
        "end_s": 15.0,
        "label": "dog",
        "verdict": Verdict.PRESENT,
    } | change
    with pytest.raises(ValueError):
        Annotation(**fields)  # type: ignore[arg-type]


def test_labels_and_ids_parse() -> None:
    assert clean_label("  church bells ") == "church bells"
    assert parse_segment_id("0123456789abcdef:42") == ("0123456789abcdef", 42)
    with pytest.raises(ValueError):
        AnnotationWriter("/nonexistent-out").append([])
