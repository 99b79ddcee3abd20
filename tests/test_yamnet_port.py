"""The torch port of YAMNet: layout of the shipped weights, padding, patching, and parity with the
int8 TFLite interpreter on stored reference scores (tests/fixtures/yamnet_parity.npz, made by
``python -m training.convert_yamnet --make-fixture``; the clips are read from ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from audify_batch.model.yamnet import (
    DEFAULT_WEIGHTS_DIR,
    EMBEDDING_DIM,
    N_AUDIOSET_CLASSES,
    PATCH_FRAMES,
    PATCH_HOP_FRAMES,
    TFLITE_INPUT_SAMPLES,
    WEIGHTS_FILE,
    Coverage,
    Yamnet,
    YamnetWeightsError,
    load_audioset_labels,
    load_yamnet,
    patch_frames,
    same_padding,
)
from audify_batch.model.yamnet_frontend import HOP_SAMPLES, YamnetFrontend, n_frames
from training.convert_yamnet import (
    DEFAULT_TFLITE,
    FIXTURE,
    fixture_waveforms,
    parity,
    save_state,
    storage_dtype,
    torch_patch_scores,
)

SHIPPED = DEFAULT_WEIGHTS_DIR / WEIGHTS_FILE


@pytest.fixture(scope="module")
def model() -> Yamnet:
    return load_yamnet()


@pytest.fixture(scope="module")
def parity_data() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(96, 3, 2, (0, 1)), (64, 3, 2, (0, 1)), (498, 3, 2, (0, 1)), (249, 3, 2, (1, 1)), (7, 3, 1, (1, 1))],
)
def test_same_padding_is_tensorflows(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert same_padding(size, kernel, stride) == expected


def test_frame_counts() -> None:
    frontend = YamnetFrontend()
    assert frontend(torch.zeros(2, TFLITE_INPUT_SAMPLES)).shape == (2, 96, 64)
    assert frontend(torch.zeros(1, 80_000)).shape == (1, n_frames(80_000), 64) == (1, 498, 64)
    with pytest.raises(ValueError, match="at least 400"):
        frontend(torch.zeros(1, 399))


def test_default_frontend_buffers_equal_the_converted_ones(model: Yamnet) -> None:
    default = YamnetFrontend()
    torch.testing.assert_close(default.window, model.frontend.window, atol=1e-6, rtol=0)
    torch.testing.assert_close(default.mel_matrix, model.frontend.mel_matrix, atol=1e-6, rtol=0)


def test_shipped_file_matches_the_module_layout() -> None:
    expected = Yamnet().state_dict()
    with safe_open(str(SHIPPED), framework="pt") as handle:
        keys = set(handle.keys())
        assert keys == set(expected)
        for key in keys:
            stored = handle.get_tensor(key)
            assert stored.shape == expected[key].shape, key
            assert stored.dtype == storage_dtype(key), key
    assert len(load_audioset_labels()) == N_AUDIOSET_CLASSES


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    state = {k: v + torch.randn_like(v) for k, v in Yamnet().state_dict().items()}
    for half in (False, True):
        path = tmp_path / f"half{half}.safetensors"
        save_state(state, path, half=half)
        loaded = load_yamnet(path).state_dict()
        for key, value in state.items():
            stored = value.to(storage_dtype(key)) if half else value
            assert loaded[key].dtype == torch.float32
            assert torch.equal(loaded[key], stored.float()), key


def test_wrong_layout_is_rejected(tmp_path: Path) -> None:
    state = Yamnet().state_dict()
    del state["head.fc.bias"]
    save_state(state, tmp_path / "bad.safetensors", half=False)
    with pytest.raises(YamnetWeightsError, match=r"missing \['head.fc.bias'\]"):
        load_yamnet(tmp_path / "bad.safetensors")
    with pytest.raises(YamnetWeightsError, match="no YAMNet weights"):
        load_yamnet(tmp_path / "absent")


def test_patches_equal_separate_tflite_sized_windows(model: Yamnet) -> None:
    """Patching the segment's log-mel = running each 0.975 s window (every 0.48 s) on its own."""
    wave = 0.3 * torch.randn(2, 80_000, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        patches = patch_frames(model.frontend(wave))
        assert patches.shape == (2, 9, PATCH_FRAMES, 64)
        per_patch = model.patch_embeddings(wave)
        hop_samples = PATCH_HOP_FRAMES * HOP_SAMPLES
        windows = torch.stack([wave[:, k * hop_samples :][:, :TFLITE_INPUT_SAMPLES] for k in range(9)], 1)
        separate = model.backbone.embed(model.frontend(windows.reshape(18, -1)).unsqueeze(1))
        out = model(wave)
    torch.testing.assert_close(per_patch, separate.reshape(2, 9, EMBEDDING_DIM), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.embedding, per_patch.mean(dim=1))
    assert out.scores.shape == (2, N_AUDIOSET_CLASSES)


@pytest.mark.parametrize("n_samples", [80_000, 3 * 16_000 + 123, TFLITE_INPUT_SAMPLES])
def test_full_coverage_is_one_pass(model: Yamnet, n_samples: int) -> None:
    wave = 0.1 * torch.randn(3, n_samples, generator=torch.Generator().manual_seed(3))
    full = Yamnet(Coverage.FULL).eval()
    full.load_state_dict(model.state_dict())
    with torch.inference_mode():
        log_mel = model.frontend(wave).unsqueeze(1)
        feature_map = model.backbone(log_mel)
        out = full(wave)
    n_time = -(-n_frames(n_samples) // 32)
    assert feature_map.shape == (3, EMBEDDING_DIM, n_time, 2)
    assert out.embedding.shape == (3, EMBEDDING_DIM)
    torch.testing.assert_close(out.scores, model.head(feature_map.mean(dim=(2, 3))))
    if n_samples == TFLITE_INPUT_SAMPLES:  # one patch: both coverages agree
        with torch.inference_mode():
            torch.testing.assert_close(out.scores, model(wave).scores)


def test_frontend_matches_tflite_log_mel(
    model: Yamnet, parity_data: dict[str, np.ndarray], shared_data: Path
) -> None:
    reference = parity_data["tflite_log_mel"]
    waves = fixture_waveforms(parity_data, shared_data / "esc50")[: len(reference)]
    with torch.inference_mode():
        log_mel = model.frontend(torch.from_numpy(waves)).numpy()
    diff = np.abs(log_mel - reference)
    assert diff.max() < 1e-2  # the largest differences sit at the floor, log(0.001)
    assert diff.mean() < 1e-4


def test_parity_with_the_tflite_interpreter(
    model: Yamnet, parity_data: dict[str, np.ndarray], shared_data: Path
) -> None:
    waves = fixture_waveforms(parity_data, shared_data / "esc50")
    assert len(waves) == len(parity_data["tflite_scores"]) >= 60
    figures = parity(torch_patch_scores(model, waves), parity_data["tflite_scores"])
    assert figures.top1_agreement >= 0.9, figures
    assert figures.pearson >= 0.98, figures


def test_conversion_from_tflite_equals_the_shipped_weights() -> None:
    pytest.importorskip("ai_edge_litert")
    if not DEFAULT_TFLITE.is_file():
        pytest.skip(f"no TFLite model at {DEFAULT_TFLITE}")
    from training.convert_yamnet import _by_name, convert, open_interpreter

    interpreter = open_interpreter()
    state = convert(interpreter)
    expected = Yamnet().state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in expected.items()}
    # Independent dequantisation of the dense layer: int8 kernel x its (per-tensor) scale.
    index = _by_name(interpreter, "tower0/network/layer29/fc/MatMul")
    scale = interpreter.get_tensor_details()[index]["quantization_parameters"]["scales"]
    dense = interpreter.get_tensor(index).astype(np.float64) * scale.astype(np.float64)
    np.testing.assert_allclose(state["head.fc.weight"].numpy(), dense, rtol=1e-6)
    with safe_open(str(SHIPPED), framework="pt") as handle:
        for key, value in state.items():
            assert torch.equal(handle.get_tensor(key), value.to(storage_dtype(key))), key
