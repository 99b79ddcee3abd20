from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from audify_batch.query import run_sql
from flows.label_archive import label_archive_flow
from tests.conftest import write_noise


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flow_labels_an_archive_and_publishes_artifacts(
    prefect_harness: None, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(3):
        write_noise(archive / f"r{i}.flac", 8.0, seed=i)
    (archive / "broken.wav").write_bytes(b"nope")
    out = tmp_path / "out"
    result = label_archive_flow(str(archive), str(out), model_dir=str(tiny_model_dir), workers=1)
    assert (result["n_labeled"], result["n_failed"], result["n_segments"]) == (3, 1, 6)
    assert run_sql(str(out), "SELECT count(*) FROM segments").rows[0][0] == 6

    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        keys = {"label-summary", "label-progress"}
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys))))
    assert {artifact.key for artifact in found} == keys
    summary = next(a for a in found if a.key == "label-summary")
    assert "n_failed" in str(summary.data)
