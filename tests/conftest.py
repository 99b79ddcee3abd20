from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Prefect: no telemetry, and a private home for this test session (set before prefect is imported).
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="audify-prefect-home-")

import numpy as np
import pytest
import soundfile as sf
from hypothesis import settings

from training.data import SHARED_DATA

# Ctrl-C tests send SIGINT to the processes they start, which inherit an ignored SIGINT: a shell
# ignores it in what it starts in the background (`pytest &`, nohup). Catching it here makes
# those processes start with the default, as from a terminal, however the suite was started.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Deterministic property tests: fixed examples, no wall-clock deadline.
settings.register_profile("audify", derandomize=True, deadline=None, max_examples=200)
settings.load_profile("audify")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server (SQLite under this session's PREFECT_HOME) for flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def seaweed_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One SeaweedFS (``weed mini``) per test session: it binds fixed ports."""
    from bench.services import seaweed_s3

    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with seaweed_s3(tmp_path_factory.mktemp("seaweed"), base) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "esc50" / "meta" / "esc50.csv").is_file():
        pytest.fail(f"ESC-50 data not found at {SHARED_DATA.resolve()} (see README: ../shared/data)")
    return SHARED_DATA


def write_tone(
    path: Path,
    seconds: float,
    sample_rate_hz: int,
    channels: int = 1,
    freq_hz: float = 440.0,
    subtype: str = "PCM_16",
) -> Path:
    t = np.arange(round(seconds * sample_rate_hz)) / sample_rate_hz
    mono = 0.3 * np.sin(2 * np.pi * freq_hz * t)
    data = np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono
    sf.write(str(path), data, sample_rate_hz, subtype=subtype)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small, randomly initialised checkpoint: the fake model for pipeline mechanics."""
    import torch

    from audify_batch.model.checkpoint import ModelCard, build_classifier, save_checkpoint
    from audify_batch.model.features import FrontendConfig
    from audify_batch.model.network import ArchConfig

    torch.manual_seed(0)
    arch = ArchConfig(n_classes=6, stem_channels=4, stage_channels=(4, 8), blocks_per_stage=(1, 1))
    n_mels = FrontendConfig().n_mels
    card = ModelCard(
        name="tiny-fake",
        version="0.1",
        labels=("dog", "rain", "siren", "o'clock", "wind", "engine"),
        frontend=FrontendConfig(),
        arch=arch,
        norm_mean_db=tuple([-30.0] * n_mels),
        norm_std_db=tuple([20.0] * n_mels),
    )
    directory = tmp_path_factory.mktemp("tiny-model")
    model = build_classifier(card)
    for module in model.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.fill_(0.5)
    save_checkpoint(directory, model.eval(), card)
    return directory


def write_noise(
    path: Path, seconds: float, sample_rate_hz: int = 16_000, seed: int = 0, channels: int = 1
) -> Path:
    rng = np.random.default_rng(seed)
    data = 0.2 * rng.standard_normal((round(seconds * sample_rate_hz), channels))
    subtype = "VORBIS" if path.suffix in (".ogg", ".oga") else "PCM_16"
    sf.write(str(path), data if channels > 1 else data[:, 0], sample_rate_hz, subtype=subtype)
    return path


SEGMENT_KEYS = "SELECT uri, segment_index, start_sample, end_sample, labels FROM segments ORDER BY ALL"
SEGMENT_SCORES = "SELECT confidences, embedding FROM segments ORDER BY uri, segment_index"


def assert_same_segments(out_a: str, out_b: str, atol: float = 1e-5) -> None:
    """The same segment rows in two OUTs: keys, bounds and labels exactly, scores to float rounding.

    Runs that group segments into batches differently (a single run and its shards) may round
    the last bit of a float32 differently (oneDNN picks kernels by batch shape); nothing else
    may differ.
    """
    from audify_batch.store.query import run_sql

    assert run_sql(out_a, SEGMENT_KEYS).rows == run_sql(out_b, SEGMENT_KEYS).rows
    scores_a, scores_b = run_sql(out_a, SEGMENT_SCORES).rows, run_sql(out_b, SEGMENT_SCORES).rows
    assert len(scores_a) == len(scores_b)
    for (conf_a, emb_a), (conf_b, emb_b) in zip(scores_a, scores_b, strict=True):
        np.testing.assert_allclose(conf_a, conf_b, rtol=0, atol=atol)
        np.testing.assert_allclose(emb_a, emb_b, rtol=0, atol=atol)
