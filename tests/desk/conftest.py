"""The review desk's tests share one small labeled OUT per test module, and a client over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app_helpers import TestClient, desk_client, label_small_archive


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return label_small_archive(tmp_path_factory.mktemp("desk"), tiny_model_dir)


@pytest.fixture(scope="module")
def client(out: Path, tiny_model_dir: Path) -> Iterator[TestClient]:
    with desk_client(out, tiny_model_dir) as test_client:
        yield test_client
