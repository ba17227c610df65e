"""One entry point to build any architecture at any size."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import TokenFusionModel
from .cnn import CNN
from .config import ARCHITECTURES, SIZES, ModelConfig, make_config
from .early import EarlyFusion
from .late import LateFusion
from .layerwise import LayerwiseFusion
from .trunks import ResNet50Trunk
from .vit import ViT

__all__ = ["create", "build", "list_models"]

_CLASSES: dict[str, type[TokenFusionModel]] = {
    "cnn": CNN, "vit": ViT, "late": LateFusion, "early": EarlyFusion, "layerwise": LayerwiseFusion,
}


def build(config: ModelConfig) -> TokenFusionModel:
    """The model that ``config`` describes, freshly initialised."""
    return _CLASSES[config.arch](config)


def create(arch: str, size: str = "tiny", *, trunk_weights: str | Path | None = None, **overrides: Any) -> TokenFusionModel:
    """Build ``arch`` (one of ``cnn, vit, late, early, layerwise``) at ``size`` (``tiny, small, base``).

    ``overrides`` replace fields of :class:`ModelConfig` (``num_classes=1000``, ``img_size=256``...).
    ``trunk_weights`` is the path of a torchvision ResNet-50 state dict on disk to initialise the
    trunk of ``small``/``base`` models; nothing is ever downloaded.
    """
    model = build(make_config(arch, size, **overrides))
    if trunk_weights is not None:
        trunk = getattr(model, "trunk", None)
        if not isinstance(trunk, ResNet50Trunk):
            raise ValueError(f"trunk_weights needs a ResNet-50 trunk; {arch}/{size} has {model.config.trunk!r}")
        trunk.load_torchvision_weights(trunk_weights)
    return model


def list_models() -> list[tuple[str, str]]:
    """Every ``(architecture, size)`` pair that :func:`create` builds."""
    return [(arch, size) for size in SIZES for arch in ARCHITECTURES]
