"""The trunk-output cache of the YAMNet fine-tuning: one float16 .npy file per augmented view.

    runs/yamnet-ft/cache/<coverage>-b<cache_blocks>/view<k>.npy   (N, [P,] C, T, F)

The cut is before the backbone's last ``cache_blocks`` blocks, so the cache feeds any
``tuned_blocks <= cache_blocks`` (the frozen blocks in between run once, ``advance``). View 0
is the clip as it is, computed in float32; the augmented views run the trunk in bf16 autocast
(their rounding is one more perturbation of an augmented input).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from audify_batch.model.families import YamnetArch
from audify_batch.model.yamnet import load_yamnet
from audify_batch.model.yamnet_classifier import YamnetClassifier, YamnetNet
from training.yamnet_features import ViewAugment, view_waveforms

META_FILE = "meta.json"


def cache_dir(root: Path, coverage: str, cache_blocks: int) -> Path:
    return Path(root) / f"{coverage}-b{cache_blocks}"


def trunk_model(coverage: str, cache_blocks: int) -> YamnetClassifier:
    """YAMNet with ``cache_blocks`` tuned copies: its trunk is the cut the cache stores.

    Contiguous (not channels-last) weights: YAMNet's depthwise convs run faster so on CPU bf16.
    """
    model = YamnetClassifier(YamnetArch(coverage=coverage, tuned_blocks=cache_blocks))
    model.load_yamnet(load_yamnet(coverage=coverage))
    # The torch stubs omit the documented to(memory_format=...) overload.
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return model.eval()


@torch.inference_mode()
def trunk_maps(
    model: YamnetClassifier, waveforms: np.ndarray, bf16: bool, batch_size: int = 32
) -> np.ndarray:
    """The trunk's output per clip, float16: (N, C, T, F) (full) or (N, P, C, T, F) (patches)."""
    net: YamnetNet = model.net
    out = []
    for start in range(0, len(waveforms), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(waveforms[start : start + batch_size]))
        log_mel = model.features(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            shared = net.trunk(log_mel)
        out.append(shared.float().reshape(len(batch), -1, *shared.shape[1:]).squeeze(1).half().numpy())
    return np.concatenate(out)


def build_cache(
    waveforms: np.ndarray,
    out_dir: Path,
    coverage: str,
    cache_blocks: int,
    n_views: int,
    seed: int,
    augment: ViewAugment | None = None,
) -> None:
    """Write views 0 .. n_views - 1 (views already there are kept: a rerun adds views)."""
    augment = augment or ViewAugment()
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / META_FILE
    meta = {
        "n_clips": len(waveforms),
        "coverage": coverage,
        "cache_blocks": cache_blocks,
        "seed": seed,
        # 0 (no attenuation) left out: caches made before the setting existed still match.
        "augment": {k: v for k, v in augment.__dict__.items() if k != "max_attenuation_db" or v},
    }
    if (
        meta_path.exists()
        and {k: v for k, v in json.loads(meta_path.read_text()).items() if k in meta} != meta
    ):
        raise SystemExit(f"{out_dir} holds a cache made otherwise; use another --cache-dir")
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    model = trunk_model(coverage, cache_blocks)
    for view in range(n_views):
        path = out_dir / f"view{view}.npy"
        if path.exists():
            continue
        started = time.perf_counter()
        maps = trunk_maps(model, view_waveforms(waveforms, view, augment, seed), bf16=view > 0)
        temporary = path.with_suffix(".tmp.npy")
        np.save(temporary, maps)
        temporary.replace(path)
        print(f"view {view}: {maps.shape} in {time.perf_counter() - started:.0f} s", flush=True)
    meta["views"] = len(sorted(out_dir.glob("view*.npy")))
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")


def cache_augment(directory: Path) -> dict[str, float]:
    """The view augmentation a cache was made with (its meta file)."""
    return dict(json.loads((Path(directory) / META_FILE).read_text())["augment"])


def load_views(directory: Path, n_views: int, clips: np.ndarray | None = None) -> torch.Tensor:
    """Views 0 .. n_views - 1 of the cache, float16 (V, N, ...); only ``clips`` where given."""
    views = []
    for view in range(n_views):
        path = Path(directory) / f"view{view}.npy"
        if not path.is_file():
            raise SystemExit(f"no cached view {view} in {directory}; run the cache command first")
        maps = np.load(path, mmap_mode="r")
        views.append(torch.from_numpy(np.ascontiguousarray(maps if clips is None else maps[clips])))
    return torch.stack(views)


def derive_cache(source: Path, out_dir: Path, coverage: str, cache_blocks: int, n_views: int) -> None:
    """A cache cut later (fewer blocks before the end) from an earlier cut's views: the frozen
    blocks in between run once per view instead of once per training process."""
    from training.yamnet_recipe import advance

    meta = json.loads((source / META_FILE).read_text())
    net = trunk_model(coverage, cache_blocks).net
    out_dir.mkdir(parents=True, exist_ok=True)
    for view in range(n_views):
        path = out_dir / f"view{view}.npy"
        if path.exists():
            continue
        started = time.perf_counter()
        maps = torch.from_numpy(np.load(source / f"view{view}.npy"))
        advanced = advance(net, maps, int(meta["cache_blocks"])).numpy()
        temporary = path.with_suffix(".tmp.npy")
        np.save(temporary, advanced)
        temporary.replace(path)
        print(f"view {view}: {advanced.shape} in {time.perf_counter() - started:.0f} s", flush=True)
    meta.update(cache_blocks=cache_blocks, derived_from=str(source), views=n_views)
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
