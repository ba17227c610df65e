"""timm models declared: ``VisionTransformer`` (ViT, DeiT, and the hybrids whose CNN tokens feed the
blocks), ``ResNet`` and ``EfficientNet`` (their ``feature_info`` stages)."""
from __future__ import annotations

from torch import nn

from ..structure import Stream, block_targets, stage_targets
from .config import AdaptedConfig
from .model import AdaptedModel, TokenSource

__all__ = ["adapt_timm"]


def adapt_timm(net: nn.Module, name: str) -> AdaptedModel:
    """``net``, a timm model built as ``name``, with its structure declared. ``ValueError`` for a type
    not declared here."""
    from timm.layers import HybridEmbed
    from timm.models import EfficientNet, ResNet, VisionTransformer

    if isinstance(net, VisionTransformer):
        return _vit(net, name, hybrid=isinstance(net.patch_embed, HybridEmbed))
    if isinstance(net, (ResNet, EfficientNet)):
        stages = tuple(f"net.{info['module']}" for info in net.feature_info)
        return AdaptedModel(net, _config(net, name), trunk_stages=stages, cam_targets=stage_targets(stages))
    raise ValueError(f"timm {name!r} is a {type(net).__name__}, which has no declared structure. "
                     "Declared: VisionTransformer (ViT, DeiT, hybrids), ResNet, EfficientNet.")


def _vit(net: nn.Module, name: str, hybrid: bool) -> AdaptedModel:
    """Blocks over ``[class (and register) tokens; image tokens]``: patch tokens, or the CNN tokens of a
    hybrid's backbone (early fusion without patch tokens), whose stages become the trunk."""
    if net.cls_token is None or net.global_pool != "token":
        raise ValueError(f"timm {name!r} reads no class token (global_pool={net.global_pool!r}); attention maps "
                         "read the class token's row, so only class-token ViTs are declared.")
    kind = "cnn" if hybrid else "patch"
    layers = tuple(f"net.blocks.{i}" for i in range(len(net.blocks)))
    streams = (Stream("net.blocks", (kind,), layers, readout=True),)
    stages = _backbone_stages(net.patch_embed.backbone) if hybrid else ()
    grid = tuple(net.patch_embed.grid_size)
    config = _config(net, name, patch_size=net.patch_embed.img_size[0] // grid[0], embed_dim=net.embed_dim,
                     depth=len(layers), num_heads=net.blocks[0].attn.num_heads)
    return AdaptedModel(
        net, config, streams=streams, attention={layer: f"{layer}.attn" for layer in layers}, trunk_stages=stages,
        sources=(TokenSource(kind, "net.patch_embed", grid),), class_tokens=net.num_prefix_tokens,
        cam_targets=stage_targets(stages) + block_targets(streams),
    )


def _backbone_stages(backbone: nn.Module) -> tuple[str, ...]:
    """A hybrid's trunk stages: its backbone's ``feature_info`` modules, or the whole backbone as one
    stage when it declares none (a bare stem, ``vit_tiny_r_s16_p8_224``)."""
    info = getattr(backbone, "feature_info", None)
    if info is None:
        return ("net.patch_embed.backbone",)
    return tuple(f"net.patch_embed.backbone.{stage['module']}" for stage in info)


def _config(net: nn.Module, name: str, **sequence: int) -> AdaptedConfig:
    cfg = net.pretrained_cfg
    return AdaptedConfig("timm", name, net.num_classes, int(cfg["input_size"][-1]), tuple(cfg["mean"]),
                         tuple(cfg["std"]), float(cfg["crop_pct"]), **sequence)
