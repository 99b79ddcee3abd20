"""The skip set (what a rerun leaves alone) equals the `recordings` view's current labeled rows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from audify_batch.model.checkpoint import read_card
from audify_batch.run.config import LabelConfig
from audify_batch.run.pipeline import label_archive
from audify_batch.store import query as Q
from audify_batch.store import schema as S
from audify_batch.store.sink import ParquetSink
from tests.conftest import write_noise
from tests.synthetic_output import (
    M1,
    M1_VERSION,
    M2,
    MODEL_NAME,
    URI_A,
    URI_B,
    URI_D,
    URI_G,
    write_synthetic_output,
)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_output(tmp_path_factory.mktemp("out")).out


def view_labeled(out: Path | str, model: str, config_hash: str) -> dict[str, tuple[int, float]]:
    """The `recordings` view's current labeled rows of one model and config hash."""
    sql = """
        SELECT uri, size_bytes, mtime_s FROM recordings
        WHERE status = 'labeled' AND model = getvariable('m') AND config_hash = getvariable('h')"""
    rows = Q.run_sql(out, sql, {"m": model, "h": config_hash}).rows
    return {uri: (size, mtime) for uri, size, mtime in rows}


def skip_set(sink: ParquetSink, config_hash: str) -> dict[str, tuple[int, float]]:
    return {uri: (key.size_bytes, key.mtime_s) for uri, key in sink.labeled_keys(config_hash).items()}


def test_skip_set_is_the_views_current_labeled_rows_of_synthetic_output(out: Path) -> None:
    pairs = Q.run_sql(out, "SELECT DISTINCT model, config_hash FROM recording_history ORDER BY ALL").rows
    assert {model for model, _ in pairs} == {M1, M2}
    for model, config_hash in [*pairs, (M1, "no-such-hash")]:
        sink = ParquetSink(str(out), MODEL_NAME, model.removeprefix(f"{MODEL_NAME}-"), "probe")
        assert skip_set(sink, config_hash) == view_labeled(out, model, config_hash), (model, config_hash)
    m1 = ParquetSink(str(out), MODEL_NAME, M1_VERSION, "probe")
    assert set(m1.labeled_keys(pairs[0][1])) == {URI_A, URI_B, URI_D, URI_G}  # C and E failed last


def test_skip_set_agrees_with_the_recordings_view_across_settings_and_failures(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    old_s, new_s = 1_000_000.0, 2_000_000.0
    for i in range(4):
        os.utime(write_noise(archive / f"r{i}.wav", 3.0 + i, seed=i), (old_s if i < 2 else new_s,) * 2)
    (archive / "bad.wav").write_bytes(b"not audio")
    os.utime(archive / "bad.wav", (new_s,) * 2)
    out = str(tmp_path / "out")
    base: dict[str, Any] = dict(source=str(archive), out=out, model_dir=str(tiny_model_dir), workers=0)
    card = read_card(tiny_model_dir)
    sink = ParquetSink(out, card.name, card.version, "probe")
    model = S.model_label(card.name, card.version)

    def hashes() -> list[str]:
        return Q.run_sql(out, "SELECT DISTINCT config_hash FROM runs ORDER BY 1").column("config_hash")

    def assert_agree() -> None:
        for config_hash in hashes():
            assert skip_set(sink, config_hash) == view_labeled(out, model, config_hash), config_hash

    label_archive(LabelConfig.of(top_k=3, **base))  # r0..r3 labeled (hash h3), bad.wav failed
    assert_agree()
    (archive / "r3.wav").write_bytes(b"broken now")  # labeled before, fails from now on
    os.utime(archive / "r3.wav", (new_s + 1,) * 2)
    label_archive(LabelConfig.of(top_k=2, modified_after_s=new_s, **base))  # other settings, new files only
    assert_agree()
    first = "SELECT config_hash FROM runs GROUP BY config_hash ORDER BY min(started_at)"
    h3, h2 = Q.run_sql(out, first).column("config_hash")
    names = {h: sorted(Path(uri).name for uri in sink.labeled_keys(h)) for h in (h3, h2)}
    assert names == {h3: ["r0.wav", "r1.wav"], h2: ["r2.wav"]}
    again = label_archive(LabelConfig.of(top_k=3, **base))  # r0, r1 skipped; r2 back to h3; r3, bad fail
    assert (again.n_skipped, again.n_labeled, again.n_failed) == (2, 1, 2)
    assert_agree()
    assert sorted(Path(uri).name for uri in sink.labeled_keys(h3)) == ["r0.wav", "r1.wav", "r2.wav"]
    assert sink.labeled_keys(h2) == {}
