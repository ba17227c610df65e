"""Training recipes. A preset fills every training option that the command line leaves unset."""
from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "resolve_preset"]

# The ImageNet recipe after DeiT (Touvron et al. 2021). `lr` is for a global batch of
# `lr_batch` images and scales linearly with the real global batch.
_IMAGENET: dict[str, Any] = dict(
    data="imagefolder", epochs=300, batch_size=128, lr=5e-4, lr_batch=512, min_lr=1e-5,
    warmup_epochs=5, weight_decay=0.05, label_smoothing=0.1, mixup=0.8, cutmix=1.0,
    randaugment=True, random_erasing=0.25, random_resized_crop=True, ema_decay=0.99996,
    clip_grad=1.0, workers=10,
)

# Fine-tuning from parts that start from state dicts on disk (--vit-weights, --trunk-weights):
# 30 epochs, one of warm-up, and the pretrained parts at a tenth of the rate of the new fusion
# parts (the CNN-token projections, cross-attention, fusion blocks, type embeddings), so that the
# new parts learn to use the pretrained ones before these move much. One rate for every
# pretrained part, no layer-wise decay: the parts were trained on ImageNet's classes already.
# The EMA follows the shorter schedule (time constant 5,000 steps instead of 25,000).
_FINETUNE: dict[str, Any] = dict(
    _IMAGENET, epochs=30, warmup_epochs=1, min_lr=1e-6, ema_decay=0.9998, pretrained_lr_scale=0.1,
    from_pretrained=True,
)

PRESETS: dict[str, dict[str, Any]] = {
    "imagenet-small": dict(_IMAGENET, size="small", drop_path=0.1),
    "imagenet-base": dict(_IMAGENET, size="base", drop_path=0.1),
    "imagenet-small-finetune": dict(_FINETUNE, size="small", drop_path=0.1),
    "imagenet-base-finetune": dict(_FINETUNE, size="base", drop_path=0.1),
    # The teaching models: SynthShapes on a laptop CPU in minutes. Fresh images are generated
    # from a seed; no MixUp or RandAugment (shape and texture are the labels).
    "synthshapes-tiny": dict(
        data="synthshapes", size="tiny", epochs=10, batch_size=64, lr=1e-3, lr_batch=64, min_lr=1e-5,
        warmup_epochs=1, weight_decay=0.05, label_smoothing=0.1, mixup=0.0, cutmix=0.0,
        randaugment=False, random_erasing=0.0, random_resized_crop=False, ema_decay=0.0,
        clip_grad=1.0, drop_path=0.0, kind_drop=0.0, workers=0, train_samples=15_000, val_samples=2000,
    ),
}

# Per-architecture departures from a preset, where one recipe does not fit all five.
ARCH_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    # A ViT has no convolutional prior and learns SynthShapes slowest per image, but its step is the
    # cheapest: twice the images. Its peak learning rate is the others' (1e-3): at 2e-3 it sat at
    # chance until its rate had decayed (docs/design.md, "The ViT's slow start"). The fusion models
    # see one kind of token alone on 40% of their images (kind dropout, against greedy learning).
    "synthshapes-tiny": {
        "vit": {"train_samples": 30_000, "warmup_epochs": 0.5},
        **{arch: {"kind_drop": 0.4} for arch in ("late", "early", "layerwise")},
    },
}


def resolve_preset(name: str, arch: str) -> dict[str, Any]:
    """The options of preset ``name`` for ``arch``."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Expected one of {sorted(PRESETS)}")
    return {**PRESETS[name], **ARCH_OVERRIDES.get(name, {}).get(arch, {})}
