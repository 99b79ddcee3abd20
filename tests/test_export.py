"""``audify export``: Raven selection tables, Audacity label tracks and a tidy CSV that give back the
``detections`` view (or the events of events.sql), over the synthetic OUT of tests/synthetic_output.py
plus a thresholded model, and over a real OUT labeled with the tiny model."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audify_batch.cli.main import main
from audify_batch.review.export import ExportRequest, export_files
from audify_batch.review.export_formats import RAVEN_COLUMNS, Detection, raven_table
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store import schema as S
from audify_batch.store.query import run_query_file, run_sql
from tests.conftest import write_noise
from tests.synthetic_output import (
    M1,
    MODEL_NAME,
    T0,
    Rec,
    recording_id,
    recordings_table,
    segments_table,
    write_run,
    write_synthetic_output,
)

# Model M3 has per-class thresholds: a segment may hold two detected labels, or none. It is the
# latest run's model. Its two recordings share a stem; one has a comma and quotes in its path.
M3 = f"{MODEL_NAME}-2.0.0"
RUN5 = "20240505T100000Z-9c0d"
URI_X = "file:///archive/site3/dawn.wav"
URI_Y = 'file:///archive/site "4", north/dawn.wav'
X_TOPS = [("dog", 0.9), ("dog", 0.8), ("rain", 0.3), ("rain", 0.7)]
X_DETECTED: list[list[str]] = [["dog", "rain"], ["dog"], [], ["rain"]]
Y_TOPS = [("wind", 0.6), ("wind", 0.65)]
Y_DETECTED = [["wind"], ["wind"]]
RATES_HZ = {URI_X: 22_050, URI_Y: 16_000}

RAVEN_HEADER = (
    "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)"
    "\tLabel\tScore\tBegin Path\tFile Offset (s)\tSegment"
)
DETECTION_HEADER = [
    "uri",
    "recording_id",
    "segment_index",
    "start_s",
    "end_s",
    "label",
    "score",
    "model",
    "segment_id",
]
DETECTIONS_SQL = """SELECT uri, recording_id, segment_index, start_s, end_s, label, confidence, model
    FROM detections WHERE model = getvariable('model') ORDER BY uri, start_s, end_s, label"""


def write_thresholded_model(out: Path) -> None:
    """Run RUN5 of M3 (one part): X at 22.05 kHz and Y, with their ``detected`` lists."""
    recs = [Rec(URI_X, S.STATUS_LABELED, X_TOPS), Rec(URI_Y, S.STATUS_LABELED, Y_TOPS)]
    segments = segments_table(M3, RUN5, recs, 8)
    detected = pa.array(X_DETECTED + Y_DETECTED, pa.list_(pa.string()))
    segments = segments.set_column(segments.schema.get_field_index(S.DETECTED), S.DETECTED, detected)
    recordings = recordings_table(M3, RUN5, recs, T0 + timedelta(days=4, minutes=1))
    rates = pa.array([RATES_HZ[URI_X], RATES_HZ[URI_Y]], pa.int32())
    index = recordings.schema.get_field_index(S.SAMPLE_RATE_HZ)
    recordings = recordings.set_column(index, recordings.schema.field(index), rates)
    name = f"part-{RUN5}-00000.parquet"
    for dataset, table in ((S.SEGMENTS, segments), (S.RECORDINGS, recordings)):
        path = out / dataset / f"{S.MODEL_PARTITION}={M3}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    write_run(out, M3, RUN5, T0 + timedelta(days=4), recs)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = write_synthetic_output(tmp_path_factory.mktemp("out")).out
    write_thresholded_model(root)
    return str(root)


def detections(out: str, model: str) -> list[dict[str, Any]]:
    return run_sql(out, DETECTIONS_SQL, {"model": model}).records()


def export(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["export", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_raven_tables_of_the_latest_model_one_per_recording(
    out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, _ = export(capsys, out, "--format", "raven", "--dest", str(tmp_path))
    rows = detections(out, M3)
    assert code == 0
    assert stdout == f"wrote 2 Raven selection tables ({len(rows)} detections of model {M3}) to {tmp_path}\n"
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {f"dawn.{recording_id(uri)[:8]}.Table.1.selections.txt" for uri in (URI_X, URI_Y)}
    for uri in (URI_X, URI_Y):
        path = tmp_path / f"dawn.{recording_id(uri)[:8]}.Table.1.selections.txt"
        assert path.read_text(encoding="utf-8").splitlines()[0] == RAVEN_HEADER
        table = read_tsv(path)
        view = [r for r in rows if r["uri"] == uri]
        assert len(table) == len(view) == (4 if uri == URI_X else 2)  # X: two labels at 0 s, none at 2 s
        for selection, (cells, row) in enumerate(zip(table, view, strict=True), start=1):
            assert cells["Selection"] == str(selection)
            assert (cells["View"], cells["Channel"], cells["Low Freq (Hz)"]) == ("Spectrogram 1", "1", "0")
            assert float(cells["High Freq (Hz)"]) == RATES_HZ[uri] / 2
            assert float(cells["Begin Time (s)"]) == pytest.approx(row["start_s"], abs=1e-6)
            assert float(cells["End Time (s)"]) == pytest.approx(row["end_s"], abs=1e-6)
            assert cells["File Offset (s)"] == cells["Begin Time (s)"]
            assert cells["Label"] == row["label"]
            assert float(cells["Score"]) == pytest.approx(row["confidence"], abs=1e-6)
            assert cells["Begin Path"] == uri.removeprefix("file://")
            assert cells["Segment"] == f"{row['recording_id']}:{row['segment_index']}"


def test_raven_round_trip_of_every_recording_of_a_model(
    out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export(capsys, out, "--format", "raven", "--model", M1, "--dest", str(tmp_path))[0] == 0
    rows = detections(out, M1)
    parsed = []
    for path in sorted(tmp_path.glob("*.Table.1.selections.txt")):
        for cells in read_tsv(path):
            rid, _, index = cells["Segment"].partition(":")
            begin_s, score = float(cells["Begin Time (s)"]), float(cells["Score"])
            parsed.append((rid, int(index), begin_s, cells["Label"], score))
    expected = [
        (r["recording_id"], r["segment_index"], r["start_s"], r["label"], round(r["confidence"], 6))
        for r in rows
    ]
    assert len(expected) == 14  # A 7, B 3, D 2 (relabeled), G 2; C and E failed
    assert sorted(parsed) == sorted(expected)


def test_audacity_label_tracks_are_start_end_label_lines(
    out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, _ = export(capsys, out, "--format", "audacity", "--model", M3, "--dest", str(tmp_path))
    assert code == 0 and stdout.startswith("wrote 2 Audacity label tracks ")
    for uri in (URI_X, URI_Y):
        text = (tmp_path / f"dawn.{recording_id(uri)[:8]}.labels.txt").read_text(encoding="utf-8")
        lines = [line.split("\t") for line in text.splitlines()]
        assert all(len(cells) == 3 for cells in lines)
        assert all(len(cells[0].split(".")[1]) == 6 for cells in lines)  # 6 decimals
        parsed = [(float(start), float(end), label) for start, end, label in lines]
        view = [r for r in detections(out, M3) if r["uri"] == uri]
        assert parsed == [(r["start_s"], r["end_s"], f"{r['label']} {r['confidence']:.2f}") for r in view]


def test_csv_gives_back_the_detections_view_row_by_row(
    out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for model in (M1, M3):
        dest = tmp_path / model
        assert export(capsys, out, "--format", "csv", "--model", model, "--dest", str(dest))[0] == 0
        assert [p.name for p in dest.iterdir()] == ["detections.csv"]
        with open(dest / "detections.csv", encoding="utf-8", newline="") as handle:
            assert next(csv.reader(handle)) == DETECTION_HEADER
        table, view = read_csv(dest / "detections.csv"), detections(out, model)
        assert len(table) == len(view) > 0
        for cells, row in zip(table, view, strict=True):
            assert cells["uri"] == row["uri"]  # URI_Y: a comma and quotes, RFC 4180 quoted
            assert cells["recording_id"] == row["recording_id"]
            assert int(cells["segment_index"]) == row["segment_index"]
            assert float(cells["start_s"]) == pytest.approx(row["start_s"], abs=1e-6)
            assert float(cells["end_s"]) == pytest.approx(row["end_s"], abs=1e-6)
            assert (cells["label"], cells["model"]) == (row["label"], model)
            assert float(cells["score"]) == pytest.approx(row["confidence"], abs=1e-6)
            assert cells["segment_id"] == f"{row['recording_id']}:{row['segment_index']}"


def test_label_and_min_score_filter(out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [out, "--format", "csv", "--model", M1, "--dest", str(tmp_path)]
    assert export(capsys, *argv, "--label", "rain")[0] == 0
    rain = read_csv(tmp_path / "detections.csv")
    assert {r["label"] for r in rain} == {"rain"} and len(rain) == 5  # A 2..5, G 0
    assert export(capsys, *argv, "--label", "rain", "--min-score", "0.6")[0] == 0
    assert [float(r["score"]) for r in read_csv(tmp_path / "detections.csv")] == pytest.approx(
        [0.7, 0.6, 0.95]
    )
    # 0.9 keeps a stored (float32) 0.9: the bound is compared as the stored type
    assert export(capsys, *argv, "--min-score", "0.9")[0] == 0
    kept = read_csv(tmp_path / "detections.csv")
    assert [(r["label"], r["score"]) for r in kept] == [
        ("dog", "0.900000"),
        ("rain", "0.950000"),
        ("o'clock", "0.900000"),
    ]


def test_events_are_the_merged_events_of_events_sql(
    out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, _ = export(
        capsys, out, "--format", "csv", "--events", "--model", M1, "--dest", str(tmp_path)
    )
    events = run_query_file(out, "events", {"uri": None, "model": M1}).records()
    assert code == 0 and f"({len(events)} events of model {M1})" in stdout
    table = read_csv(tmp_path / "events.csv")
    assert list(table[0]) == [
        "uri",
        "recording_id",
        "start_s",
        "end_s",
        "label",
        "score",
        "n_segments",
        "model",
    ]
    parsed = sorted(
        (r["uri"], float(r["start_s"]), float(r["end_s"]), r["label"], int(r["n_segments"])) for r in table
    )
    assert parsed == sorted((e["uri"], e["start_s"], e["end_s"], e["label"], e["n_segments"]) for e in events)
    a_rain = next(r for r in table if r["label"] == "rain" and r["uri"].endswith("/a.wav"))
    assert (a_rain["start_s"], a_rain["end_s"], float(a_rain["score"])) == (
        "2.000000",
        "6.000000",
        pytest.approx(0.95),
    )

    argv = [out, "--format", "raven", "--events", "--model", M3, "--dest", str(tmp_path / "raven")]
    assert export(capsys, *argv, "--label", "dog")[0] == 0
    (path,) = (tmp_path / "raven").iterdir()
    (event,) = read_tsv(path)  # X: dog on segments 0 and 1, merged; Y has no dog
    assert (event["Begin Time (s)"], event["End Time (s)"], event["Segment"]) == ("0.000000", "2.000000", "")
    assert float(event["Score"]) == pytest.approx(0.9) and float(event["High Freq (Hz)"]) == 11_025


def test_no_detections_for_the_filter_writes_nothing(
    out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "export"
    code, stdout, _ = export(
        capsys, out, "--format", "raven", "--label", "no such label", "--dest", str(dest)
    )
    assert code == 0
    assert stdout == f"no detections of model {M3} in {out} with label 'no such label': nothing written\n"
    assert not dest.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--min-score", "1.5"], "audify: error: --min-score must be a number from 0 to 1, got 1.5\n"),
        (["--min-score", "nan"], "audify: error: --min-score must be a number from 0 to 1, got nan\n"),
        (["--model", "nope-1"], f"audify: error: no model 'nope-1' in OUT: it has {M1}, "),
    ],
)
def test_bad_arguments_are_one_line_errors(
    out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, stdout, stderr = export(capsys, out, "--format", "csv", "--dest", str(tmp_path / "x"), *argv)
    assert (code, stdout) == (1, "")
    assert stderr.startswith(message) and stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_an_out_that_is_not_there_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    code, stdout, stderr = export(capsys, str(missing), "--format", "csv", "--dest", str(tmp_path / "x"))
    assert (code, stdout) == (1, "")
    assert stderr.startswith("audify: error: ") and f"no output under '{missing}'" in stderr
    assert stderr.count("\n") == 1


def test_text_cells_keep_the_table_shape_and_names_stay_apart() -> None:
    odd = Detection("/a/b.wav", "0123456789abcdef", 0.0, 0.96, "a\tb\nc", 0.5, "m-1", 44_100, 0)
    header, line = raven_table([odd]).splitlines()
    assert header == RAVEN_HEADER
    assert len(line.split("\t")) == len(RAVEN_COLUMNS) and line.split("\t")[7] == "a b c"
    assert line.split("\t")[6] == "22050"
    twin = Detection("/c/b.wav", "0123456789abcdee", 0.0, 0.96, "dog", 0.5, "m-1", 44_100, 0)
    names = set(export_files([odd, twin], "audacity"))  # one stem, ids alike in 8 characters: whole ids
    assert names == {"b.0123456789abcdef.labels.txt", "b.0123456789abcdee.labels.txt"}
    with pytest.raises(ValueError, match="unknown export format"):
        ExportRequest(out="o", format="xlsx")


def test_export_of_an_out_labeled_by_the_tiny_model(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, out = tmp_path / "archive", tmp_path / "out"
    archive.mkdir()
    write_noise(archive / "one.wav", 3.0, sample_rate_hz=16_000, seed=1)
    write_noise(archive / "two.wav", 2.0, sample_rate_hz=22_050, seed=2)
    label_archive(LabelConfig.of(source=str(archive), out=str(out), model_dir=str(tiny_model_dir), workers=0))
    model = run_sql(str(out), "SELECT model FROM runs").rows[0][0]
    code, stdout, _ = export(capsys, str(out), "--format", "raven", "--dest", str(tmp_path / "raven"))
    assert code == 0 and stdout.startswith("wrote 2 Raven selection tables ")
    for wav, rate_hz in (("one.wav", 16_000), ("two.wav", 22_050)):
        uri = str(archive / wav)
        rows = [r for r in detections(str(out), model) if r["uri"] == uri]  # top-1: one per segment
        table = read_tsv(
            tmp_path / "raven" / f"{Path(wav).stem}.{rows[0]['recording_id'][:8]}.Table.1.selections.txt"
        )
        assert [(c["Label"], c["Segment"]) for c in table] == [
            (r["label"], f"{r['recording_id']}:{r['segment_index']}") for r in rows
        ]
        assert {float(c["High Freq (Hz)"]) for c in table} == {rate_hz / 2}
        assert [c["Begin Path"] for c in table] == [uri] * len(rows)
