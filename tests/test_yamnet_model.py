"""The YAMNet-based model family: checkpoints, heads, both vocabularies, ``detected``, and its
outputs beside a 1.x model's in one OUT."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from audify_batch.cli.main import main
from audify_batch.model.checkpoint import (
    FAST_MODEL_DIR,
    CheckpointError,
    ModelCard,
    load_checkpoint,
    read_card,
    resolve_model_dir,
    save_checkpoint,
)
from audify_batch.model.families import FAMILY_YAMNET, YamnetArch
from audify_batch.model.features import FrontendConfig
from audify_batch.model.inference import Precision, TorchModel, score_batch, to_top_k
from audify_batch.model.known_gate import KnownSoundGate
from audify_batch.model.yamnet import load_audioset_labels, load_yamnet, patch_frames
from audify_batch.model.yamnet_classifier import YamnetClassifier
from audify_batch.store.query import connect

LABELS = ("dog", "rain", "siren", "o'clock", "wind", "engine")
YAMNET_FRONTEND = FrontendConfig(
    sample_rate_hz=16_000,
    n_fft=512,
    win_length=400,
    hop_length=160,
    n_mels=64,
    f_min_hz=125.0,
    f_max_hz=7500.0,
)


def yamnet_card(arch: YamnetArch, thresholds: tuple[float, ...] = ()) -> ModelCard:
    return ModelCard(
        name="yamnet-test",
        version="0.1",
        labels=LABELS,
        frontend=YAMNET_FRONTEND,
        arch=arch,
        norm_mean_db=(),
        norm_std_db=(),
        family=FAMILY_YAMNET,
        audioset_labels=load_audioset_labels(),
        thresholds=thresholds,
    )


@pytest.fixture(scope="module")
def yamnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YAMNet's weights, two tuned blocks and a random 6-class head; 'dog' detected from 0.5."""
    torch.manual_seed(0)
    arch = YamnetArch(n_classes=len(LABELS), tuned_blocks=2, esc_activation="sigmoid")
    model = YamnetClassifier(arch)
    model.load_yamnet(load_yamnet())
    directory = tmp_path_factory.mktemp("yamnet-model")
    save_checkpoint(directory, model.eval(), yamnet_card(arch, (0.5, 1.1, 1.1, 1.1, 1.1, 1.1)))
    return directory


def test_checkpoint_round_trip_keeps_the_scores(yamnet_dir: Path) -> None:
    model, card = load_checkpoint(yamnet_dir)
    assert card.family == FAMILY_YAMNET and card.embedding_dim == 1024
    assert len(card.audioset_labels) == 521 and card.thresholds[0] == 0.5
    again, _ = load_checkpoint(yamnet_dir)
    waveform = torch.randn(2, 80_000) * 0.1
    with torch.no_grad():
        first, second = model(waveform), again(waveform)
    assert torch.equal(first.logits, second.logits)
    assert first.logits.shape == (2, len(LABELS)) and first.embedding.shape == (2, 1024)
    assert first.audioset_scores is not None and first.audioset_scores.shape == (2, 521)


def test_the_audioset_head_stays_yamnets_whatever_the_tuned_blocks_learn(yamnet_dir: Path) -> None:
    model, _ = load_checkpoint(yamnet_dir)
    with torch.no_grad():
        for parameter in model.net.tuned.parameters():  # as if fine-tuning changed them
            parameter.add_(torch.randn_like(parameter))
        waveform = torch.randn(3, 80_000) * 0.1
        scores = model(waveform).audioset_scores
        port = load_yamnet()
        patches = patch_frames(port.frontend(waveform), 96, 96)  # the model's 0.96 s hop
        per_patch = port.head(port.backbone.embed(patches.reshape(-1, 1, 96, 64))).reshape(3, -1, 521)
    assert scores is not None
    torch.testing.assert_close(scores, per_patch.mean(dim=1), atol=1e-5, rtol=1e-4)


def test_detected_is_what_passes_its_class_threshold(yamnet_dir: Path) -> None:
    model = TorchModel.load(yamnet_dir, torch.device("cpu"), Precision.FP32)
    scores = score_batch(model.network, torch.randn(4, 80_000) * 0.1, Precision.FP32)
    out = to_top_k(scores, model.card, top_k=3)
    assert out.detected is not None and out.detected.shape == (4, len(LABELS))
    np.testing.assert_array_equal(out.detected[:, 0], scores.probs[:, 0].numpy() >= 0.5)
    assert not out.detected[:, 1:].any()  # thresholds above 1: never detected
    assert out.audioset_indices is not None and out.audioset_indices.shape == (4, 3)


def constant_gate(bias: float, n_weights: int = 521) -> KnownSoundGate:
    """A gate that reads the scores but decides by its bias: each weight 1e-3, so that the logit
    is within 5 of ``bias`` whatever the scores."""
    return KnownSoundGate(weights=(1e-3,) * n_weights, bias=bias, min_probability=0.5)


def test_a_known_sound_gate_round_trips_and_empties_detected_below_its_cut(
    yamnet_dir: Path, tmp_path: Path
) -> None:
    network, card = load_checkpoint(yamnet_dir)
    always = replace(card, thresholds=(0.0,) + (1.1,) * 5)  # 'dog' detected wherever the gate lets it
    scores = score_batch(network, torch.randn(3, 80_000) * 0.1, Precision.FP32)
    for bias, detected in ((-10.0, False), (10.0, True)):
        directory = tmp_path / f"gate{bias}"
        save_checkpoint(directory, network, replace(always, known_gate=constant_gate(bias)))
        _, loaded = load_checkpoint(directory)
        assert loaded.known_gate == constant_gate(bias)
        assert replace(loaded, weights_sha256=always.weights_sha256) == replace(
            always, known_gate=constant_gate(bias)
        )
        out = to_top_k(scores, loaded, top_k=3)
        assert out.detected is not None
        assert out.detected[:, 0].tolist() == [detected] * 3 and not out.detected[:, 1:].any()
        assert np.array_equal(out.indices, to_top_k(scores, always, top_k=3).indices)  # the ranking stays


def test_an_invalid_gate_is_refused_and_a_card_without_one_loads(yamnet_dir: Path) -> None:
    import json

    _, card = load_checkpoint(yamnet_dir)
    text = replace(card, known_gate=constant_gate(0.0)).to_json()
    good = json.loads(text)
    assert ModelCard.from_json(text).known_gate == constant_gate(0.0)
    for key, value in (("weights", [1.0, 2.0]), ("min_probability", 1.5), ("bias", None), ("bias", "nan")):
        data = {**good, "known_gate": {**good["known_gate"], key: value}}
        with pytest.raises(CheckpointError, match="gate"):
            ModelCard.from_json(json.dumps(data))
    with pytest.raises(CheckpointError, match="needs per-class thresholds"):
        ModelCard.from_json(json.dumps({**good, "thresholds": []}))
    del good["known_gate"]  # cards written before the gate (2.0.0, 1.x)
    assert ModelCard.from_json(json.dumps(good)).known_gate is None
    assert read_card("fast").known_gate is None


def test_a_gated_card_refitted_in_place_labels_again(yamnet_dir: Path, tmp_path: Path) -> None:
    from audify_batch.run.config import LabelConfig
    from audify_batch.run.pipeline import config_hash

    _, card = load_checkpoint(yamnet_dir)
    config = LabelConfig.of(str(tmp_path), str(tmp_path / "out"))
    gated = replace(card, known_gate=constant_gate(0.0))
    refits = (gated, replace(gated, known_gate=constant_gate(1.0)), replace(gated, thresholds=(0.4,) * 6))
    hashes = {config_hash(c, config, Precision.FP32) for c in refits}
    assert len(hashes) == 3  # same name, version and weights: the rule itself tells them apart


def test_thresholds_must_match_the_labels() -> None:
    with pytest.raises(CheckpointError, match="thresholds"):
        yamnet_card(YamnetArch(n_classes=len(LABELS)), thresholds=(0.5,))


def test_shipped_model_names_resolve() -> None:
    assert resolve_model_dir("fast") == FAST_MODEL_DIR
    assert resolve_model_dir("some/folder") == Path("some/folder")
    fast = read_card("fast")
    assert fast.version.startswith("1.") and fast.audioset_labels == () and fast.thresholds == ()


def test_a_card_without_family_is_a_1x_resnet(tmp_path: Path) -> None:
    card = read_card(FAST_MODEL_DIR)
    text = (FAST_MODEL_DIR / "model_card.json").read_text()
    assert '"family"' not in text  # written before families existed
    assert card.family == "esc50-resnet"
    with pytest.raises(CheckpointError, match="family"):
        replace(card, family="nope")


def test_two_models_in_one_out_stay_in_their_partitions(
    yamnet_dir: Path, tmp_path: Path, shared_data: Path
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for clip in sorted((shared_data / "esc50" / "audio").glob("*.flac"))[:3]:
        (source / clip.name).symlink_to(clip.resolve())
    out = tmp_path / "out"
    assert main(["label", str(source), "--out", str(out), "--model", "fast", "--workers", "0"]) == 0
    assert main(["label", str(source), "--out", str(out), "--model", str(yamnet_dir), "--workers", "0"]) == 0
    partitions = sorted(p.name for p in (out / "segments").iterdir())
    assert len(partitions) == 2 and any("yamnet-test-0.1" in p for p in partitions)
    con = connect(str(out))
    rows = con.sql(
        "SELECT model, count(*), count(detected), count(audioset_labels) FROM segments"
        " GROUP BY model ORDER BY model"
    ).fetchall()
    by_model = {model: (n, n_detected, n_audioset) for model, n, n_detected, n_audioset in rows}
    fast = next(m for m in by_model if "yamnet" not in m)
    assert by_model[fast] == (3, 0, 0)  # 1.x: no thresholds, no AudioSet head: nulls
    assert by_model["yamnet-test-0.1"] == (3, 3, 3)
    detections = con.sql("SELECT model, count(*) FROM detections GROUP BY model").fetchall()
    assert dict(detections)[fast] == 3  # a 1.x model's top-1 stands in for detected
    audioset = con.execute("SELECT count(*) FROM audioset_labels WHERE model = 'yamnet-test-0.1'").fetchone()
    assert audioset == (15,)  # top-5 of 521 per segment
    with pytest.raises(duckdb.Error):
        con.sql("SELECT embedding FROM segments").fetchall()  # 256-d and 1024-d: one D per view set


def test_parts_written_before_the_new_columns_still_read(
    yamnet_dir: Path, tmp_path: Path, shared_data: Path
) -> None:
    import pyarrow.parquet as pq

    from audify_batch.store import schema as S

    source = tmp_path / "in"
    source.mkdir()
    for clip in sorted((shared_data / "esc50" / "audio").glob("*.flac"))[:2]:
        (source / clip.name).symlink_to(clip.resolve())
    out = tmp_path / "out"
    assert main(["label", str(source), "--out", str(out), "--model", "fast", "--workers", "0"]) == 0
    new_columns = [S.DETECTED, S.AUDIOSET_LABELS, S.AUDIOSET_SCORES]
    for part in (out / "segments").rglob("part-*.parquet"):  # as an older audify-batch wrote them
        pq.write_table(pq.read_table(part).drop_columns(new_columns), part)
    (out / "segments" / "model=x-1").mkdir()
    (out / "segments" / "model=x-1" / "part-crashed-00000.parquet").write_bytes(b"PAR1")  # debris
    assert main(["label", str(source), "--out", str(out), "--model", str(yamnet_dir), "--workers", "0"]) == 0
    rows = (
        connect(str(out))
        .execute("SELECT model, count(*), count(detected) FROM segments GROUP BY model ORDER BY model")
        .fetchall()
    )
    assert [(n, n_detected) for _, n, n_detected in rows] == [(2, 0), (2, 2)]


def test_a_whole_segment_esc_branch_still_reads_audioset_from_patches() -> None:
    model = YamnetClassifier(YamnetArch(n_classes=len(LABELS), coverage="full", tuned_blocks=2)).eval()
    model.load_yamnet(load_yamnet())
    port = load_yamnet()
    waveform = torch.randn(2, 80_000) * 0.1
    with torch.no_grad():
        scores = model(waveform).audioset_scores
        patches = patch_frames(port.frontend(waveform), 96, 96)
        per_patch = port.head(port.backbone.embed(patches.reshape(-1, 1, 96, 64))).reshape(2, -1, 521)
        whole = model.net.heads(model.net.trunk(model.features(waveform)), 2)
    assert scores is not None and whole.audioset_scores is None  # not from the whole-segment pass
    torch.testing.assert_close(scores, per_patch.mean(dim=1), atol=1e-5, rtol=1e-4)


def test_the_default_model_detects_nothing_in_silence_and_the_sound_in_a_clear_clip(
    tmp_path: Path, shared_data: Path
) -> None:
    from audify_batch.model.inference import classify_file, prepare_for_inference

    network, card = load_checkpoint("default")
    assert card.family == FAMILY_YAMNET and card.thresholds and card.known_gate is not None
    network = prepare_for_inference(network, torch.device("cpu"))
    silence = tmp_path / "silence.wav"
    import soundfile as sf

    sf.write(silence, np.zeros(5 * 16_000, np.float32), 16_000)
    clear = shared_data / "esc50-fold4-44k" / "audio" / "4-102844-A-49.flac"  # a hand saw
    for precision in (Precision.FP32, Precision.BF16):
        (quiet,) = classify_file(network, card, silence, precision=precision)
        (saw,) = classify_file(network, card, clear, precision=precision)
        assert quiet.detected == () and quiet.audioset_labels[0] == "Silence"
        assert saw.detected == ("hand_saw",) and saw.audioset_labels[0] == "Sawing"
