"""Convert the int8 TFLite YAMNet classifier into the torch port's weights; parity fixture and check.

    .venv/bin/python -m training.convert_yamnet [--out runs/yamnet-port/]  # float32 + labels
    .venv/bin/python -m training.convert_yamnet --ship           # float16 into the package
    .venv/bin/python -m training.convert_yamnet --make-fixture   # tests/fixtures/yamnet_parity.npz
    .venv/bin/python -m training.convert_yamnet --check          # parity figures

Needs ``ai_edge_litert`` (the ``training`` extra). Weights are dequantised exactly as the
interpreter defines them: int8 kernel x per-output-channel scale, int32 bias x bias scale.
Tensors are found by walking the graph's operators in order (CONV_2D / DEPTHWISE_CONV_2D, then
the final FULLY_CONNECTED); each one's TFLite name is checked against the torch key it fills.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import save_file

from audify_batch.model.yamnet import (
    DEFAULT_WEIGHTS_DIR,
    LABELS_FILE,
    TFLITE_INPUT_SAMPLES,
    WEIGHTS_FILE,
    Yamnet,
    load_yamnet,
)
from audify_batch.model.yamnet_frontend import LOG_OFFSET, SAMPLE_RATE_HZ
from training.data import SHARED_DATA

REPO_ROOT = Path(__file__).resolve().parents[1]
TFLITE_DIR = REPO_ROOT.parent / "shared" / "models" / "yamnet"
DEFAULT_TFLITE = TFLITE_DIR / "yamnet_classifier_int8.tflite"
DEFAULT_OUT = REPO_ROOT / "runs" / "yamnet-port"
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "yamnet_parity.npz"
ESC50_ROOT = SHARED_DATA / "esc50"
PATCH_HOP_SAMPLES = 7680  # 0.48 s
N_RANDOM_OFFSET_CLIPS = 5
N_LOG_MEL_KEPT = 4


def open_interpreter(path: Path = DEFAULT_TFLITE) -> Any:
    """A TFLite interpreter with the reference kernels' op resolver, all tensors kept readable."""
    litert = importlib.import_module("ai_edge_litert.interpreter")
    interpreter = litert.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    interpreter.allocate_tensors()
    return interpreter


def _quant(interpreter: Any, index: int) -> tuple[np.ndarray, np.ndarray, int]:
    params = interpreter.get_tensor_details()[index]["quantization_parameters"]
    return params["scales"], params["zero_points"], int(params["quantized_dimension"])


def dequantize(interpreter: Any, index: int) -> np.ndarray:
    """A constant tensor as float32: (q - zero_point) * scale, per channel along its dimension."""
    values = interpreter.get_tensor(index)
    scales, zero_points, axis = _quant(interpreter, index)
    if scales.size == 0:
        return values.astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = -1 if scales.size > 1 else 1
    real = (values.astype(np.float64) - zero_points.reshape(shape)) * scales.astype(np.float64).reshape(shape)
    return real.astype(np.float32)


def _ops(interpreter: Any) -> list[tuple[str, list[int], list[int]]]:
    return [
        (op["op_name"], op["inputs"].tolist(), op["outputs"].tolist())
        for op in interpreter._get_ops_details()
    ]


def _conv_keys() -> list[tuple[str, str]]:
    """(torch prefix, expected TFLite layer name) of every conv, in graph order."""
    keys = [("backbone.stem", "layer1/conv/")]
    for block in range(13):
        keys.append((f"backbone.blocks.{block}.depthwise", f"layer{2 * block + 2}/sepconv/"))
        keys.append((f"backbone.blocks.{block}.pointwise", f"layer{2 * block + 3}/conv/"))
    return keys


def _check_name(interpreter: Any, index: int, expected: str) -> None:
    first = interpreter.get_tensor_details()[index]["name"].split(";")[0]
    if not re.search(rf"(^|/){re.escape(expected)}", first):
        raise ValueError(f"TFLite tensor {first!r} is not {expected!r}")


def _by_name(interpreter: Any, name: str) -> int:
    for detail in interpreter.get_tensor_details():
        if detail["name"] == name:
            return int(detail["index"])
    raise ValueError(f"no tensor named {name!r} in the TFLite graph")


def convert(interpreter: Any) -> dict[str, torch.Tensor]:
    """The float32 state dict of ``Yamnet`` from the TFLite graph."""
    ops = _ops(interpreter)
    convs = [(inputs, name) for name, inputs, _ in ops if name in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    dense = [inputs for name, inputs, _ in ops if name == "FULLY_CONNECTED"]
    keys = _conv_keys()
    if len(convs) != len(keys) or len(dense) != 2:
        raise ValueError(f"unexpected graph: {len(convs)} convs, {len(dense)} dense layers")
    state: dict[str, np.ndarray] = {}
    for (inputs, op_name), (prefix, layer) in zip(convs, keys, strict=True):
        _check_name(interpreter, inputs[1], layer)
        kernel = dequantize(interpreter, inputs[1])
        # TFLite conv kernels are OHWI, depthwise 1HWC; torch wants OIHW and (C, 1, H, W).
        order = (3, 0, 1, 2) if op_name == "DEPTHWISE_CONV_2D" else (0, 3, 1, 2)
        _check_name(interpreter, inputs[2], layer)
        state[f"{prefix}.weight"] = kernel.transpose(order)
        state[f"{prefix}.bias"] = dequantize(interpreter, inputs[2])
    _check_name(interpreter, dense[1][1], "layer29/fc/")
    _check_name(interpreter, dense[1][2], "layer29/fc/")
    state["head.fc.weight"] = dequantize(interpreter, dense[1][1])
    state["head.fc.bias"] = dequantize(interpreter, dense[1][2])
    mel_weight, mel_bias = dense[0][1], dense[0][2]
    if not np.allclose(interpreter.get_tensor(mel_bias), LOG_OFFSET, rtol=0, atol=1e-9):
        raise ValueError("the mel layer's bias is not the log offset 0.001")
    state["frontend.mel_matrix"] = interpreter.get_tensor(mel_weight).T
    state["frontend.window"] = interpreter.get_tensor(_by_name(interpreter, "stft/hann_window/sub_2"))
    return {name: torch.from_numpy(np.ascontiguousarray(value)).float() for name, value in state.items()}


def storage_dtype(name: str) -> torch.dtype:
    """Conv and dense kernels are stored as float16; biases and frontend buffers stay float32."""
    return (
        torch.float16
        if name.startswith(("backbone.", "head.")) and name.endswith(".weight")
        else torch.float32
    )


def save_state(state: dict[str, torch.Tensor], path: Path, half: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = {k: v.to(storage_dtype(k) if half else torch.float32).contiguous() for k, v in state.items()}
    save_file(stored, str(path), metadata={"source": "yamnet_classifier_int8.tflite (Apache-2.0)"})


def write_weights(tflite: Path, out_dir: Path, half: bool) -> Path:
    state = convert(open_interpreter(tflite))
    expected = {k: tuple(v.shape) for k, v in Yamnet().state_dict().items()}
    if {k: tuple(v.shape) for k, v in state.items()} != expected:
        raise ValueError("converted tensors do not match the Yamnet state dict")
    save_state(state, out_dir / WEIGHTS_FILE, half)
    shutil.copyfile(tflite.parent / "yamnet_521_labels.txt", out_dir / LABELS_FILE)
    return out_dir / WEIGHTS_FILE


def synthetic_waveforms() -> dict[str, np.ndarray]:
    """Deterministic 0.975 s test signals (regenerated by the test, never stored)."""
    t = np.arange(TFLITE_INPUT_SAMPLES) / SAMPLE_RATE_HZ
    rng = np.random.default_rng(1234)
    chirp_phase = 2 * np.pi * (200 * t + 0.5 * (4000 - 200) / t[-1] * t**2)
    waves = {
        "silence": np.zeros_like(t),
        "sine_1khz": 0.5 * np.sin(2 * np.pi * 1000 * t),
        "white_noise": 0.1 * rng.standard_normal(t.size),
        "chirp_200_4000hz": 0.3 * np.sin(chirp_phase),
        "clicks_4hz": np.where(np.arange(t.size) % 4000 < 80, 0.8, 0.0) * rng.standard_normal(t.size),
    }
    return {name: np.clip(w, -1, 1).astype(np.float32) for name, w in waves.items()}


def read_patch(esc50_root: Path, clip: str, offset_samples: int) -> np.ndarray:
    audio, rate_hz = sf.read(esc50_root / "audio" / clip, dtype="float32")
    if rate_hz != SAMPLE_RATE_HZ or audio.ndim != 1:
        raise ValueError(f"{clip}: expected mono {SAMPLE_RATE_HZ} Hz, got {rate_hz} Hz, shape {audio.shape}")
    patch = audio[offset_samples : offset_samples + TFLITE_INPUT_SAMPLES]
    if patch.size != TFLITE_INPUT_SAMPLES:
        raise ValueError(f"{clip}: no {TFLITE_INPUT_SAMPLES} samples at offset {offset_samples}")
    return patch


def fixture_waveforms(fixture: Any, esc50_root: Path = ESC50_ROOT) -> np.ndarray:
    """The fixture's patches (clips, then synthetic), shape (P, 15600) float32."""
    clips = [
        read_patch(esc50_root, str(name), int(offset))
        for name, offset in zip(fixture["clip_names"], fixture["offsets_samples"], strict=True)
    ]
    synthetic = synthetic_waveforms()
    return np.stack(clips + [synthetic[str(name)] for name in fixture["synthetic_names"]])


def choose_clips(esc50_root: Path) -> list[tuple[str, int]]:
    """One clip per class at its loudest patch-aligned offset, plus a few at random offsets."""
    with open(esc50_root / "meta" / "esc50.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda r: (int(r["target"]), r["filename"]))
    by_class: dict[int, list[str]] = {}
    for row in rows:
        by_class.setdefault(int(row["target"]), []).append(row["filename"])
    rng = np.random.default_rng(0)
    chosen = []
    for names in by_class.values():
        name = names[int(rng.integers(len(names)))]
        audio, _ = sf.read(esc50_root / "audio" / name, dtype="float32")
        offsets = range(0, audio.size - TFLITE_INPUT_SAMPLES + 1, PATCH_HOP_SAMPLES)
        energies = [float(np.square(audio[o : o + TFLITE_INPUT_SAMPLES]).sum()) for o in offsets]
        chosen.append((name, offsets[int(np.argmax(energies))]))
    for _ in range(N_RANDOM_OFFSET_CLIPS):
        names = by_class[int(rng.integers(len(by_class)))]
        name = names[int(rng.integers(len(names)))]
        chosen.append((name, int(rng.integers(0, 80_000 - TFLITE_INPUT_SAMPLES))))
    return chosen


def run_tflite(interpreter: Any, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TFLite scores (P, 521) and the log-mel patches it computed (P, 96, 64)."""
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    feature_index = _by_name(interpreter, "feature_patch")
    scores, features = [], []
    for wave in waves:
        interpreter.set_tensor(input_index, wave.astype(np.float32))
        interpreter.invoke()
        scores.append(interpreter.get_tensor(output_index)[0].copy())
        features.append(interpreter.get_tensor(feature_index)[0].copy())
    return np.stack(scores), np.stack(features)


def make_fixture(tflite: Path, path: Path = FIXTURE) -> None:
    clips = choose_clips(ESC50_ROOT)
    synthetic = list(synthetic_waveforms())
    fixture: dict[str, Any] = {
        "clip_names": np.array([c for c, _ in clips]),
        "offsets_samples": np.array([o for _, o in clips], dtype=np.int64),
        "synthetic_names": np.array(synthetic),
    }
    scores, features = run_tflite(open_interpreter(tflite), fixture_waveforms(fixture))
    fixture["tflite_scores"] = scores.astype(np.float16)
    fixture["tflite_log_mel"] = features[:N_LOG_MEL_KEPT].astype(np.float32)
    fixture["litert_version"] = np.array(importlib.import_module("ai_edge_litert").__version__)
    np.savez_compressed(path, **fixture)
    print(f"wrote {path}: {len(scores)} patches ({len(clips)} ESC-50, {len(synthetic)} synthetic)")


@dataclass(frozen=True)
class Parity:
    top1_agreement: float  # fraction of patches with the same top class
    pearson: float  # correlation of all (patch, class) scores

    def __str__(self) -> str:
        return f"top-1 agreement {100 * self.top1_agreement:.1f} %, Pearson r {self.pearson:.4f}"


def parity(torch_scores: np.ndarray, tflite_scores: np.ndarray) -> Parity:
    """TFLite's scores come in steps of 1/256: torch's top class agrees if it ties TFLite's best."""
    reference = tflite_scores.astype(np.float64)
    picked = reference[np.arange(len(reference)), torch_scores.argmax(axis=1)]
    agree = picked >= reference.max(axis=1)
    r = np.corrcoef(torch_scores.astype(np.float64).ravel(), reference.ravel())[0, 1]
    return Parity(top1_agreement=float(agree.mean()), pearson=float(r))


def torch_patch_scores(model: Yamnet, waves: np.ndarray) -> np.ndarray:
    """Scores for (P, 15600) waveforms: one 96-frame patch each."""
    with torch.inference_mode():
        return model(torch.from_numpy(waves)).scores.numpy()


def _fake_quant(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    q = torch.clamp(torch.round(x / scale) + zero_point, -128, 127)
    return (q - zero_point) * scale


def emulate_int8_activations(model: Yamnet, interpreter: Any) -> list[Any]:
    """Hooks that fake-quantise every activation with the graph's scale and zero point."""
    ops = _ops(interpreter)

    def act(index: int) -> tuple[float, int]:
        scales, zero_points, _ = _quant(interpreter, index)
        return float(scales[0]), int(zero_points[0])

    convs = [outputs[0] for name, _, outputs in ops if name in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    quantize = next(outputs[0] for name, _, outputs in ops if name == "QUANTIZE")
    mean = next(outputs[0] for name, _, outputs in ops if name == "MEAN")
    logits = [outputs[0] for name, _, outputs in ops if name == "FULLY_CONNECTED"][1]
    # Registration order is graph order: stem, blocks.0.depthwise, blocks.0.pointwise, ...
    modules = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]

    def out_hook(scale_zp: tuple[float, int], relu6: bool) -> Any:
        return lambda _m, _i, y: _fake_quant(y.clamp(0.0, 6.0) if relu6 else y, *scale_zp)

    def in_hook(scale_zp: tuple[float, int]) -> Any:
        return lambda _m, inputs: (_fake_quant(inputs[0], *scale_zp),)

    handles = [m.register_forward_hook(out_hook(act(i), True)) for m, i in zip(modules, convs, strict=True)]
    handles.append(model.backbone.register_forward_pre_hook(in_hook(act(quantize))))
    handles.append(model.head.fc.register_forward_pre_hook(in_hook(act(mean))))
    handles.append(model.head.fc.register_forward_hook(out_hook(act(logits), False)))
    return handles


def check(tflite: Path, weights: Path) -> None:
    interpreter = open_interpreter(tflite)
    fixture = np.load(FIXTURE)
    waves = fixture_waveforms(fixture)
    scores, features = run_tflite(interpreter, waves)
    drift = np.abs(scores - fixture["tflite_scores"].astype(np.float32)).max()
    print(f"{len(waves)} patches; fresh TFLite run vs stored fixture: max |diff| {drift:.4f}")
    fp32 = Yamnet().eval()
    fp32.load_state_dict(convert(interpreter))
    with torch.inference_mode():
        log_mel = fp32.frontend(torch.from_numpy(waves)).numpy()
    print(f"frontend: max |log-mel diff| vs TFLite {np.abs(log_mel - features).max():.2e}")
    print(f"float32 weights (converted):  {parity(torch_patch_scores(fp32, waves), scores)}")
    fp16 = load_yamnet(weights)
    print(f"float16 weights ({weights.name}): {parity(torch_patch_scores(fp16, waves), scores)}")
    handles = emulate_int8_activations(fp32, interpreter)
    emulated = np.round(torch_patch_scores(fp32, waves) * 256) / 256
    for handle in handles:
        handle.remove()
    print(f"float32 + int8 activations emulated: {parity(emulated, scores)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tflite", type=Path, default=DEFAULT_TFLITE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the float32 conversion")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--ship", action="store_true", help=f"write float16 weights to {DEFAULT_WEIGHTS_DIR}")
    mode.add_argument("--make-fixture", action="store_true", help=f"write {FIXTURE.name}")
    mode.add_argument("--check", action="store_true", help="print parity figures on the fixture")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS_DIR, help="for --check")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.make_fixture:
        make_fixture(args.tflite)
    elif args.check:
        check(args.tflite, args.weights)
    elif args.ship:
        print(f"wrote {write_weights(args.tflite, DEFAULT_WEIGHTS_DIR, half=True)}")
    else:
        print(f"wrote {write_weights(args.tflite, args.out, half=False)}")


if __name__ == "__main__":
    main()
