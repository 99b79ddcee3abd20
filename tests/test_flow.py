from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from audify_batch.orchestration.artifacts import PROGRESS_KEY, REPORT_KEY, SUMMARY_KEY
from audify_batch.orchestration.outcome import COMPLETED_WITH_FAILURES
from audify_batch.store.query import run_sql
from flows.label_archive import label_archive_flow, main
from tests.conftest import write_noise


def latest_artifacts(keys: set[str]) -> dict[str, object]:
    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys)))
        )
    return {artifact.key: artifact.data for artifact in found}


def test_flow_labels_an_archive_and_publishes_artifacts(
    prefect_harness: None, tiny_model_dir: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(3):
        write_noise(archive / f"r{i}.flac", 8.0, seed=i)
    broken = archive / "broken.wav"
    broken.write_bytes(b"nope")
    out = tmp_path / "out"
    result = label_archive_flow(str(archive), str(out), model_dir=str(tiny_model_dir), workers=1)
    figures = ("n_recordings", "n_labeled", "n_skipped", "n_failed", "n_segments")
    assert tuple(result[f] for f in figures) == (4, 3, 0, 1, 6)  # 8 s -> two 5 s segments each
    assert (result["out"], result["model"]) == (str(out), "tiny-fake 0.1")
    assert [uri for uri, _ in result["failures"]] == [str(broken)]
    assert result["failures"][0][1]  # a reason, not an empty string
    assert result["audio_s"] == pytest.approx(3 * 8.0)

    # What the flow reports is what it wrote.
    per_recording = run_sql(str(out), "SELECT uri, status, n_segments FROM recordings ORDER BY uri").rows
    names = [(Path(uri).name, status, n) for uri, status, n in per_recording]
    assert names == [
        ("broken.wav", "failed", 0),
        ("r0.flac", "labeled", 2),
        ("r1.flac", "labeled", 2),
        ("r2.flac", "labeled", 2),
    ]
    segments = run_sql(
        str(out), "SELECT count(*), count(DISTINCT uri), min(run_id), max(run_id) FROM segments"
    )
    assert segments.rows[0] == (6, 3, result["run_id"], result["run_id"])
    run = run_sql(
        str(out), "SELECT run_id, status, n_recordings, n_labeled, n_skipped, n_failed, n_segments FROM runs"
    ).rows
    assert list(run) == [(result["run_id"], "completed", 4, 3, 0, 1, 6)]

    artifacts = latest_artifacts({SUMMARY_KEY, PROGRESS_KEY, REPORT_KEY})
    assert set(artifacts) == {SUMMARY_KEY, PROGRESS_KEY, REPORT_KEY}
    assert float(artifacts[PROGRESS_KEY]) == 100.0
    table = artifacts[SUMMARY_KEY]
    rows = json.loads(table) if isinstance(table, str) else table
    values = {row["figure"]: row["value"] for row in rows if row["figure"] != "failed"}
    assert {f: values[f] for f in figures} == {f: str(result[f]) for f in figures}
    assert values["run_id"] == result["run_id"]
    assert [row["value"] for row in rows if row["figure"] == "failed"] == [
        f"{uri}: {reason}" for uri, reason in result["failures"]
    ]
    report = str(artifacts[REPORT_KEY])
    assert "- recordings: 4 (3 labeled, 0 unchanged, 1 failed)" in report
    assert "- segments: 6;" in report
    assert f"- `{result['failures'][0][0]}`: {result['failures'][0][1]}" in report
    html = out / "reports" / f"{result['run_id']}.html"
    assert html.is_file() and html.as_uri() in report and "Labels over the archive" in html.read_text()
    counts = run_sql(
        str(out),
        "SELECT label, count(*), count(DISTINCT uri) FROM labels WHERE rank = 1 "
        "GROUP BY label ORDER BY count(*) DESC, label",
    ).rows
    assert sum(n for _, n, _ in counts) == 6
    label_rows = [line for line in report.splitlines() if line.startswith("| tiny-fake-0.1 |")]
    assert label_rows == [
        f"| tiny-fake-0.1 | {label} | {n} | {n / 6:.3f} | {n_recordings} |"
        for label, n, n_recordings in counts
    ]


def test_failed_recordings_end_completed_with_failures_and_a_clean_run_completed(
    prefect_harness: None, tiny_model_dir: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    write_noise(archive / "good.wav", 6.0)
    broken = archive / "broken.wav"
    broken.write_bytes(b"")
    out = tmp_path / "out"
    state = label_archive_flow(
        str(archive), str(out), model_dir=str(tiny_model_dir), workers=0, return_state=True
    )
    # Completed (no retry, no crash alert), but named apart from a clean run, with the count.
    assert state.is_completed() and state.name == COMPLETED_WITH_FAILURES
    assert state.message is not None and state.message.startswith("1 of 2 recordings failed")
    result = state.result()
    assert (result["n_labeled"], result["n_failed"]) == (1, 1)
    assert [tuple(failure) for failure in result["failures"]] == [(str(broken), "empty file (0 bytes)")]
    assert result["report_url"] == (out / "reports" / f"{result['run_id']}.html").as_uri()

    broken.unlink()  # the next run has nothing left that fails: a plain Completed
    state = label_archive_flow(
        str(archive), str(out), model_dir=str(tiny_model_dir), workers=0, return_state=True
    )
    assert state.is_completed() and state.name == "Completed"
    assert state.message == "0 labeled, 1 unchanged, none failed"
    assert list(state.result()["failures"]) == []


def test_running_the_flow_file_names_failures_and_the_report_and_exits_3(
    prefect_harness: None,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ["DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED"]:
        monkeypatch.delenv(name, raising=False)  # restored after the test
    archive = tmp_path / "archive"
    archive.mkdir()
    write_noise(archive / "good.wav", 6.0)
    (archive / "corrupt.wav").write_bytes(b"RIFF not really")
    out = tmp_path / "out"
    caplog.set_level("INFO")
    assert main([str(archive), str(out), "--model", str(tiny_model_dir)]) == 3
    assert os.environ["DO_NOT_TRACK"] == "1"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    text = caplog.text
    assert f"failed: {archive / 'corrupt.wav'}: " in text
    (report,) = (out / "reports").glob("*.html")
    assert f"report: {report}" in text

    (archive / "corrupt.wav").unlink()
    assert main([str(archive), str(out), "--model", str(tiny_model_dir)]) == 0


def test_gpu_limit_holds_a_global_concurrency_slot_per_model_step(
    prefect_harness: None, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    archive = tmp_path / "archive"
    archive.mkdir()
    write_noise(archive / "r.wav", 12.0)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="gpu-test", limit=1))
    result = label_archive_flow(
        str(archive), str(tmp_path / "out"), model_dir=str(tiny_model_dir), workers=0, gpu_limit="gpu-test"
    )
    assert result["n_segments"] == 3
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name("gpu-test")
    assert limit.active_slots == 0  # every slot taken was given back
    with pytest.raises(Exception, match="gpu-missing"):  # a missing limit is an error, not unlimited
        label_archive_flow(
            str(archive),
            str(tmp_path / "out2"),
            model_dir=str(tiny_model_dir),
            workers=0,
            gpu_limit="gpu-missing",
        )


def test_credentials_from_a_prefect_secret_block_never_reach_the_output(
    prefect_harness: None, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fsspec
    from prefect.blocks.system import Secret

    from tests.s3_server import moto_s3

    with moto_s3() as endpoint:
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir("block-creds")
        write_noise(tmp_path / "r.wav", 6.0)
        fs.put_file(str(tmp_path / "r.wav"), "block-creds/archive/r.wav")
        # Only the block knows where the store is and how to sign in.
        for key in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]:
            monkeypatch.delenv(key)
        secret = "block-secret-0123456789"
        options = {"key": "block-key", "secret": secret, "endpoint_url": endpoint}
        Secret(value=json.dumps(options)).save("audify-test-storage", overwrite=True)
        result = label_archive_flow(
            "s3://block-creds/archive",
            "s3://block-creds/out",
            model_dir=str(tiny_model_dir),
            workers=1,
            storage_block="audify-test-storage",
        )
        assert result["n_labeled"] == 1
        store = fsspec.filesystem("s3", skip_instance_cache=True, **options)
        written = store.find("block-creds/out")
        assert any(p.endswith(".html") for p in written)
        assert all(secret.encode() not in store.cat_file(p) for p in written)
    artifacts = latest_artifacts({SUMMARY_KEY, REPORT_KEY})
    assert secret not in json.dumps(artifacts, default=str)
