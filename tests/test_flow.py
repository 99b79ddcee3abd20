from __future__ import annotations

from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from audify_batch.query import run_sql
from flows.artifacts import PROGRESS_KEY, REPORT_KEY, SUMMARY_KEY
from flows.label_archive import label_archive_flow
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
    (archive / "broken.wav").write_bytes(b"nope")
    out = tmp_path / "out"
    result = label_archive_flow(str(archive), str(out), model_dir=str(tiny_model_dir), workers=1)
    assert (result["n_labeled"], result["n_failed"], result["n_segments"]) == (3, 1, 6)
    assert run_sql(str(out), "SELECT count(*) FROM segments").rows[0][0] == 6

    artifacts = latest_artifacts({SUMMARY_KEY, PROGRESS_KEY, REPORT_KEY})
    assert set(artifacts) == {SUMMARY_KEY, PROGRESS_KEY, REPORT_KEY}
    assert "n_failed" in str(artifacts[SUMMARY_KEY])
    report = str(artifacts[REPORT_KEY])
    assert "broken.wav" in report and "## Top-1 labels over the archive" in report
    top_label = run_sql(
        str(out), "SELECT label FROM labels WHERE rank = 1 GROUP BY label ORDER BY count(*) DESC, label"
    )
    assert f"| {top_label.rows[0][0]} |" in report
