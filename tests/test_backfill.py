"""The backfill flow: typed, validated parameters; prefix, list and time-range selection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prefect.exceptions import ParameterTypeError

from audify_batch.store.query import run_sql
from flows.backfill import BackfillRequest, backfill_flow
from tests.conftest import write_noise

JAN_2024 = 1_704_067_200  # 2024-01-01T00:00:00Z
JAN_2025 = 1_735_689_600


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    folder.mkdir()
    for i, when in enumerate([JAN_2024 - 86_400, JAN_2024 + 86_400, JAN_2025 + 86_400]):
        path = write_noise(folder / f"r{i}.wav", 6.0, seed=i)
        os.utime(path, (when, when))
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prefix": None}, "exactly one of prefix and uris"),
        ({"uris": ["a.wav"]}, "exactly one of prefix and uris"),
        ({"modified_after": "2024-01-01T00:00:00"}, "time zone"),
        ({"modified_after": "2025-01-01T00:00:00Z", "modified_before": "2024-01-01T00:00:00Z"}, "earlier"),
        ({"model_dir": "/nonexistent/model"}, "no usable model"),
        ({"top_k": 0}, "greater than or equal to 1"),
        ({"colour": "blue"}, "Extra inputs"),
    ],
)
def test_bad_parameters_fail_before_any_work(
    prefect_harness: None, archive: Path, tmp_path: Path, tiny_model_dir: Path, change: dict, message: str
) -> None:
    out = tmp_path / "out"
    request = {"out": str(out), "prefix": str(archive), "model_dir": str(tiny_model_dir), **change}
    with pytest.raises(ParameterTypeError, match=message):
        backfill_flow(request=request)
    assert not out.exists()


def test_backfill_by_time_range_and_by_list(
    prefect_harness: None, archive: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    out = str(tmp_path / "out")
    in_2024 = BackfillRequest(
        out=out,
        prefix=str(archive),
        model_dir=str(tiny_model_dir),
        workers=0,
        modified_after="2024-01-01T00:00:00Z",
        modified_before="2025-01-01T00:00:00Z",
    )
    result = backfill_flow(request=in_2024)
    assert result["n_labeled"] == 1
    listed = BackfillRequest(
        out=out,
        uris=[str(archive / "r0.wav"), str(archive / "r1.wav")],
        model_dir=str(tiny_model_dir),
        workers=0,
    )
    result = backfill_flow(request=listed)
    assert (result["n_labeled"], result["n_skipped"]) == (1, 1)
    labeled = run_sql(out, "SELECT regexp_extract(uri, '[^/]+$') FROM recordings ORDER BY 1").rows
    assert [row[0] for row in labeled] == ["r0.wav", "r1.wav"]
