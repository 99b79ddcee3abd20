from __future__ import annotations

import pytest
import torch

from audify_batch.model.features import FrontendConfig
from audify_batch.model.network import ArchConfig, AudioClassifier, AudioResNet, capture_activations


def make_classifier(arch: ArchConfig) -> AudioClassifier:
    n_mels = FrontendConfig().n_mels
    return AudioClassifier(FrontendConfig(), arch, torch.zeros(n_mels), torch.ones(n_mels)).eval()


def test_output_shapes_and_embedding_size() -> None:
    arch = ArchConfig()
    out = make_classifier(arch)(torch.randn(3, 80_000))
    assert out.logits.shape == (3, 50)
    assert out.embedding.shape == (3, arch.embedding_dim) == (3, arch.stage_channels[-1])


@pytest.mark.parametrize(
    "arch",
    [
        ArchConfig(stage_channels=(8, 16), blocks_per_stage=(2, 1), stem_channels=8, n_classes=7),
        ArchConfig(stage_channels=(16, 16, 32), blocks_per_stage=(1, 2, 3), stem_channels=4),
    ],
)
def test_width_and_depth_come_from_config(arch: ArchConfig) -> None:
    net = AudioResNet(arch)
    out = net.eval()(torch.randn(2, 64, 251))
    assert out.logits.shape == (2, arch.n_classes)
    assert out.embedding.shape == (2, arch.stage_channels[-1])
    for index, n_blocks in enumerate(arch.blocks_per_stage):
        assert len(getattr(net, f"stage{index + 1}")) == n_blocks


def test_every_stage_is_reachable_through_hooks() -> None:
    arch = ArchConfig()
    net = AudioResNet(arch).eval()
    with capture_activations(net) as activations:
        net(torch.randn(1, 64, 251))
    assert list(activations) == list(arch.stage_names)
    assert activations["stage4"].shape[1] == arch.stage_channels[-1]
    assert activations["stem"].shape[1] == arch.stem_channels
    # hooks are removed on exit
    assert not any(getattr(net, name)._forward_hooks for name in arch.stage_names)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_classes=1),
        dict(stage_channels=(8,), blocks_per_stage=(1, 1)),
        dict(dropout=1.0),
        dict(stage_channels=(0, 8), blocks_per_stage=(1, 1)),
        dict(pooling="median"),
    ],
)
def test_invalid_arch_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ArchConfig(**kwargs)


def test_max_mean_pooling_keeps_a_short_event() -> None:
    """Mean over bands, then max + mean over time: one loud frame is not averaged away."""
    quiet = torch.zeros(1, 2, 4, 10)
    event = quiet.clone()
    event[0, 0, :, 3] = 1.0
    pool = AudioResNet(ArchConfig(pooling="freq_mean_time_max_mean")).pool
    torch.testing.assert_close(pool(event), torch.tensor([[1.1, 0.0]]))
    torch.testing.assert_close(AudioResNet(ArchConfig()).pool(event), torch.tensor([[0.1, 0.0]]))


def test_pooling_is_part_of_the_card_and_old_cards_mean_average() -> None:
    arch = ArchConfig(pooling="freq_mean_time_max_mean")
    assert ArchConfig.from_dict(arch.to_dict()) == arch
    old_card = {k: v for k, v in ArchConfig().to_dict().items() if k != "pooling"}
    assert ArchConfig.from_dict(old_card).pooling == "mean"
