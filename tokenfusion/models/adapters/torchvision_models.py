"""torchvision models declared: ``ResNet`` (its four ``layer`` stages) and ``VisionTransformer``."""
from __future__ import annotations

from torch import nn

from ..config import IMAGENET_MEAN, IMAGENET_STD
from ..structure import CamTarget, Stream, stage_targets
from .config import AdaptedConfig
from .model import AdaptedModel, TokenSource

__all__ = ["adapt_torchvision"]

#: torchvision's evaluation transform: resize to 256, centre-crop 224.
CROP_PCT = 224 / 256


def adapt_torchvision(net: nn.Module, name: str) -> AdaptedModel:
    """``net``, a torchvision model built as ``name``, with its structure declared. ``ValueError`` for a
    type not declared here."""
    from torchvision.models import ResNet, VisionTransformer

    if isinstance(net, ResNet):
        stages = tuple(f"net.layer{i}" for i in range(1, 5))
        config = AdaptedConfig("torchvision", name, net.fc.out_features, 224, IMAGENET_MEAN, IMAGENET_STD, CROP_PCT)
        return AdaptedModel(net, config, trunk_stages=stages, cam_targets=stage_targets(stages))
    if isinstance(net, VisionTransformer):
        return _vit(net, name)
    raise ValueError(f"torchvision {name!r} is a {type(net).__name__}, which has no declared structure. "
                     "Declared: ResNet, VisionTransformer.")


def _vit(net: nn.Module, name: str) -> AdaptedModel:
    """The encoder's layers over ``[class; patch]``; patch tokens from ``conv_proj``."""
    layers = tuple(f"net.encoder.layers.{n}" for n, _ in net.encoder.layers.named_children())
    streams = (Stream("net.encoder.layers", ("patch",), layers, readout=True),)
    config = AdaptedConfig("torchvision", name, net.heads.head.out_features, net.image_size, IMAGENET_MEAN,
                           IMAGENET_STD, CROP_PCT, patch_size=net.patch_size, embed_dim=net.hidden_dim,
                           depth=len(layers), num_heads=net.encoder.layers[0].num_heads)
    return AdaptedModel(
        net, config, streams=streams, attention={layer: f"{layer}.self_attention" for layer in layers},
        sources=(TokenSource("patch", "net.conv_proj"),),
        cam_targets=tuple(CamTarget(f"{layer}.ln_1", "patch", "tokens", layer) for layer in layers),
    )
