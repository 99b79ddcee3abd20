"""The open-set check set (bench/open_set.py): deterministic, 5 s mono 16 kHz PCM_16, all kinds."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench import open_set
from bench.open_set import KINDS, OpenSetItem, build_open_set

HAS_ESPEAK = shutil.which("espeak-ng") is not None
requires_espeak = pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng not installed (setup.sh installs it)")
# Without espeak-ng, everything but speech is still checked.
BUILD_KINDS = KINDS if HAS_ESPEAK else tuple(kind for kind in KINDS if kind != "speech")
N_PER_KIND = 3


def _hashes(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[OpenSetItem]]]:
    """Seed 7 twice, seed 8 once, and seed 7 with one more file per kind."""
    root = tmp_path_factory.mktemp("open_set")
    runs = {"a": (7, N_PER_KIND), "b": (7, N_PER_KIND), "other_seed": (8, N_PER_KIND)}
    runs["more"] = (7, N_PER_KIND + 1)
    return {
        name: (root / name, build_open_set(root / name, seed, n_per_kind, BUILD_KINDS))
        for name, (seed, n_per_kind) in runs.items()
    }


def test_same_seed_gives_identical_bytes(builds: dict[str, tuple[Path, list[OpenSetItem]]]) -> None:
    hashes_a, hashes_b = _hashes(builds["a"][0]), _hashes(builds["b"][0])
    assert len(hashes_a) == len(BUILD_KINDS) * N_PER_KIND + 1  # the files and the manifest
    assert hashes_a == hashes_b


def test_different_seed_gives_different_files(builds: dict[str, tuple[Path, list[OpenSetItem]]]) -> None:
    hashes_a, hashes_other = _hashes(builds["a"][0]), _hashes(builds["other_seed"][0])
    assert hashes_a.keys() == hashes_other.keys()
    differing = {name for name in hashes_a if hashes_a[name] != hashes_other[name]}
    # Digital silence is all zeros whatever the seed; every other file differs.
    assert len(differing) >= len(hashes_a) - N_PER_KIND
    assert {name.split("_")[0] for name in differing} >= set(BUILD_KINDS) - {"silence"}


def test_a_file_does_not_depend_on_n_per_kind(builds: dict[str, tuple[Path, list[OpenSetItem]]]) -> None:
    hashes_a, hashes_more = _hashes(builds["a"][0]), _hashes(builds["more"][0])
    del hashes_a[open_set.MANIFEST_NAME]
    assert hashes_a == {name: hashes_more[name] for name in hashes_a}


def test_every_file_is_five_seconds_mono_16k_pcm16(builds: dict[str, tuple[Path, list[OpenSetItem]]]) -> None:
    folder, items = builds["a"]
    for item in items:
        info = sf.info(item.path)
        assert (info.samplerate, info.channels, info.frames) == (16_000, 1, 80_000), item
        assert (info.format, info.subtype) == ("WAV", "PCM_16"), item
        assert item.path.parent == folder


def test_manifest_lists_every_file_with_its_kind_and_params(
    builds: dict[str, tuple[Path, list[OpenSetItem]]],
) -> None:
    folder, items = builds["a"]
    with (folder / open_set.MANIFEST_NAME).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["file"], row["kind"], row["params"]) for row in rows] == [
        (item.path.name, item.kind, item.params) for item in items
    ]
    assert Counter(row["kind"] for row in rows) == dict.fromkeys(BUILD_KINDS, N_PER_KIND)
    assert all(isinstance(json.loads(row["params"]), dict) for row in rows)
    assert sorted(path.name for path in folder.glob("*.wav")) == sorted(row["file"] for row in rows)


@requires_espeak
def test_all_kinds_present_and_default_count_is_at_least_300(
    builds: dict[str, tuple[Path, list[OpenSetItem]]],
) -> None:
    assert {item.kind for item in builds["a"][1]} == set(KINDS)
    assert open_set.DEFAULT_N_PER_KIND * len(KINDS) >= 300


@pytest.mark.parametrize("kind", BUILD_KINDS)
def test_generate_returns_five_seconds_of_float32_in_range(kind: str) -> None:
    signal = open_set.generate(kind, np.random.default_rng(1), 16_000)
    assert signal.dtype == np.float32
    assert signal.shape == (80_000,)
    assert float(np.max(np.abs(signal))) <= 1.0
    again = open_set.generate(kind, np.random.default_rng(1), 16_000)
    assert np.array_equal(signal, again)


def test_levels_are_as_documented() -> None:
    silence_peaks = [
        np.max(np.abs(open_set.to_pcm16(open_set.generate("silence", np.random.default_rng(i)))))
        for i in range(10)
    ]
    assert max(silence_peaks) <= 8  # at most a few LSB of dither
    hiss = open_set.generate("hiss", np.random.default_rng(3)).astype(np.float64)
    assert -61.0 <= 20 * np.log10(np.sqrt(np.mean(hiss**2))) <= -39.0


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        open_set.generate("dog", np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 16000"):
        open_set.generate("tone", np.random.default_rng(0), 8_000)
    with pytest.raises(ValueError, match="n_per_kind"):
        build_open_set(tmp_path / "zero", seed=0, n_per_kind=0)
    with pytest.raises(ValueError, match="kinds must be distinct"):
        build_open_set(tmp_path / "dog", seed=0, n_per_kind=1, kinds=("dog",))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="not empty"):
        build_open_set(tmp_path / "used", seed=0, n_per_kind=1, kinds=("tone",))


def test_cli_reports_a_non_empty_folder_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x").write_text("")
    assert open_set.main(["--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
