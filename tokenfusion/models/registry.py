"""One entry point to build any architecture at any size."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .adapters import AdaptedConfig, AdaptedModel, build_adapted
from .base import TokenFusionModel
from .cnn import CNN
from .config import ARCHITECTURES, SIZES, ModelConfig, make_config
from .early import EarlyFusion
from .late import LateFusion
from .layerwise import LayerwiseFusion
from .pretrained import load_patch_stream, load_trunk, read_vit_weights
from .vit import ViT

__all__ = ["create", "build", "list_models"]

_CLASSES: dict[str, type[TokenFusionModel]] = {
    "cnn": CNN, "vit": ViT, "late": LateFusion, "early": EarlyFusion, "layerwise": LayerwiseFusion,
}


def build(config: ModelConfig | AdaptedConfig) -> TokenFusionModel | AdaptedModel:
    """The model that ``config`` describes, freshly initialised.

    Every LayerNorm gets ``config.norm_eps``; ``model.weight_sources`` (which file each part
    started from, filled by :func:`create`) starts empty. An :class:`AdaptedConfig` builds its
    library's model, adapted (:func:`~tokenfusion.models.adapters.build_adapted`).
    """
    if isinstance(config, AdaptedConfig):
        return build_adapted(config)
    model = _CLASSES[config.arch](config)
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = config.norm_eps
    model.weight_sources = {}
    return model


def create(
    arch: str,
    size: str = "tiny",
    *,
    trunk_weights: str | Path | None = None,
    vit_weights: str | Path | None = None,
    **overrides: Any,
) -> TokenFusionModel:
    """Build ``arch`` (one of ``cnn, vit, late, early, layerwise``) at ``size`` (``tiny, small, base``).

    ``overrides`` replace fields of :class:`ModelConfig` (``num_classes=1000``, ``img_size=256``...).
    Parts can start from state dicts on disk (nothing is ever downloaded):

    - ``trunk_weights``: a torchvision ResNet-50 state dict, for the trunk of ``small``/``base``, or a
      ``cnn`` checkpoint of this project, for a model with its trunk;
    - ``vit_weights``: a torchvision ``VisionTransformer`` or timm ViT/DeiT state dict, or a ``vit``
      checkpoint of this project, for the patch stream of ``vit``, ``early``, ``late``, ``layerwise``
      (see :mod:`.pretrained`). The model's LayerNorm epsilon becomes the source's (1e-6 for timm
      and torchvision).

    ``model.weight_sources`` records the file, format and modules of each part so started.
    """
    source = None
    if vit_weights is not None:
        source = read_vit_weights(vit_weights)
        eps = overrides.setdefault("norm_eps", source.norm_eps)
        if eps != source.norm_eps:
            raise ValueError(f"norm_eps={eps} conflicts with the ViT weights, whose LayerNorm epsilon is {source.norm_eps}")
    model = build(make_config(arch, size, **overrides))
    if trunk_weights is not None:
        model.weight_sources["trunk"] = load_trunk(model, trunk_weights)
    if source is not None:
        model.weight_sources["patch stream"] = load_patch_stream(model, source)
    return model


def list_models() -> list[tuple[str, str]]:
    """Every ``(architecture, size)`` pair that :func:`create` builds."""
    return [(arch, size) for size in SIZES for arch in ARCHITECTURES]
