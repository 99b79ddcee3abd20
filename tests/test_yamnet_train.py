"""The YAMNet fine-tuning loop on a tiny synthetic cache (no ESC-50, no YAMNet weights needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audify_batch.model.families import YamnetArch
from audify_batch.model.yamnet_classifier import YamnetNet
from training.yamnet_recipe import YamnetRecipe, advance, esc_forward, predict_esc_logits, train_esc_branch
from training.yamnet_train import score_summary, with_overrides

N_CLASSES = 4


def _net(tuned_blocks: int, activation: str = "softmax") -> YamnetNet:
    torch.manual_seed(0)
    arch = YamnetArch(n_classes=N_CLASSES, tuned_blocks=tuned_blocks, esc_activation=activation, dropout=0.1)
    net = YamnetNet(arch)
    net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return net.eval()


def _synthetic_views(n_views: int = 2, per_class: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps at block 12's input (1024 channels, 2 x 2): each class lights its own channels."""
    gen = torch.Generator().manual_seed(1)
    targets = torch.arange(N_CLASSES).repeat_interleave(per_class)
    base = torch.rand(len(targets), 1024, 2, 2, generator=gen) * 0.5
    for index, target in enumerate(targets.tolist()):
        base[index, target * 64 : (target + 1) * 64] += 3.0
    views = torch.stack([base + 0.1 * v * torch.rand(base.shape, generator=gen) for v in range(n_views)])
    return views.half(), targets


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_training_learns_the_synthetic_classes_and_touches_only_the_tuned_parts(activation: str) -> None:
    net = _net(tuned_blocks=1, activation=activation)
    frozen = {name: p.clone() for name, p in net.named_parameters() if not name.startswith(("tuned", "head"))}
    tuned_before = net.tuned[0].pointwise.weight.clone()
    views, targets = _synthetic_views()
    recipe = YamnetRecipe(
        tuned_blocks=1,
        esc_activation=activation,
        epochs=15,
        batch_size=8,
        head_lr=3e-3,
        block_lr=1e-4,
        mixup_alpha=0.2,
        time_masks=1,
        time_mask_frames=1,
        n_views=2,
    )
    train_esc_branch(net, views, targets, recipe, N_CLASSES)
    logits = predict_esc_logits(net, views[0])
    assert (logits.argmax(1) == targets).float().mean() == 1.0
    assert all(torch.equal(p, frozen[name]) for name, p in net.named_parameters() if name in frozen)
    assert not torch.equal(net.tuned[0].pointwise.weight, tuned_before)
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_training_is_deterministic() -> None:
    views, targets = _synthetic_views()
    recipe = YamnetRecipe(tuned_blocks=1, epochs=2, batch_size=8, n_views=2)
    results = []
    for _ in range(2):
        net = train_esc_branch(_net(tuned_blocks=1), views, targets, recipe, N_CLASSES)
        results.append(predict_esc_logits(net, views[0]))
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("coverage", ["full", "patches"])
def test_the_training_forward_is_the_models_forward(coverage: str) -> None:
    """Advancing a cache cut before the last 2 blocks, then the tuned block and the head, gives
    the logits of the model run on the log-mel (so CV figures hold for the shipped model)."""
    arch = YamnetArch(n_classes=N_CLASSES, tuned_blocks=1, coverage=coverage)
    torch.manual_seed(0)
    net = YamnetNet(arch).eval()
    log_mel = torch.randn(2, 64, 200)
    cut = YamnetNet(YamnetArch(n_classes=N_CLASSES, tuned_blocks=2, coverage=coverage))
    cut.backbone.load_state_dict(net.backbone.state_dict())
    with torch.inference_mode():
        cached = cut.trunk(log_mel)
        cached = cached.reshape(2, -1, *cached.shape[1:]).squeeze(1).half().float()
        expected = net.heads(net.trunk(log_mel), 2).logits
    logits = predict_esc_logits(net, advance(net, cached.half(), cache_blocks=2))
    torch.testing.assert_close(logits, expected, atol=2e-2, rtol=2e-2)
    assert torch.equal(esc_forward(net, advance(net, cached.half(), 2).float()), logits)


def test_advance_refuses_a_cache_cut_after_the_tuned_blocks() -> None:
    with pytest.raises(ValueError, match="cannot feed"):
        advance(_net(tuned_blocks=2), torch.zeros(1, 1024, 2, 2).half(), cache_blocks=1)


def test_overrides_and_recipe_validation() -> None:
    recipe = with_overrides(YamnetRecipe(), "tuned_blocks=1,esc_activation=sigmoid,head_lr=0.002")
    assert (recipe.tuned_blocks, recipe.esc_activation, recipe.head_lr) == (1, "sigmoid", 0.002)
    assert not with_overrides(recipe, "time_roll=false").time_roll
    with pytest.raises(SystemExit, match="unknown recipe field"):
        with_overrides(recipe, "nonsense=1")
    with pytest.raises(ValueError):
        YamnetRecipe(coverage="sometimes")


def test_score_summary() -> None:
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    summary = score_summary(scores, np.array([0, 1, 2]))
    assert summary["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert 0.0 <= summary["pair_auc"] <= 1.0


def test_attenuated_views_are_quieter_and_the_default_views_are_unchanged() -> None:
    from training.yamnet_features import ViewAugment, view_waveforms

    clips = (0.3 * np.sin(np.linspace(0, 2000, 80_000, dtype=np.float32)))[None].repeat(8, axis=0)
    plain = view_waveforms(clips, 1, ViewAugment(), seed=3)
    assert np.array_equal(plain, view_waveforms(clips, 1, ViewAugment(max_attenuation_db=0.0), seed=3))
    quiet = view_waveforms(clips, 1, ViewAugment(max_attenuation_db=30.0), seed=3)

    def level_db(x: np.ndarray) -> np.ndarray:
        return 20 * np.log10(np.sqrt((x**2).mean(axis=1)))

    drop_db = level_db(plain) - level_db(quiet)
    assert drop_db.mean() > 5 and drop_db.max() <= 30 + 12 + 0.1  # at most 30 dB more, +-6 dB gain each
    assert np.array_equal(view_waveforms(clips, 0, ViewAugment(max_attenuation_db=30.0), seed=3), clips)
    for wrong in ({"max_attenuation_db": -6.0}, {"max_gain_db": -1.0}, {"max_speed_change": 1.0}):
        with pytest.raises(ValueError, match="must be"):
            ViewAugment(**wrong)
