"""Model configuration: one dataclass for every architecture, one table of sizes."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["ARCHITECTURES", "SIZES", "ModelConfig", "make_config"]

ARCHITECTURES = ("cnn", "vit", "late", "early", "layerwise")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved whole inside every checkpoint.

    ``trunk`` is ``"local"`` (the teaching trunk: stride 8, receptive field 19 px), ``"tiny"`` (the
    SynthShapes v1 trunk: stride 8, receptive field 39 px) or ``"resnet50"`` (torchvision ResNet-50 up
    to ``layer3``, stride 16). ``mean``/``std`` are the input normalisation the model expects on images
    scaled to [0, 1]; ``crop_pct`` the share of the image its evaluation transform keeps.
    ``kind_drop_rate`` (fusion models, training only): the share of training images that see one kind
    of token alone, the other zeroed (half of them lose their CNN tokens, half their patch tokens).
    """

    arch: str
    size: str
    num_classes: int
    img_size: int
    patch_size: int
    trunk: str
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    fusion_depth: int = 1
    tiny_trunk_channels: tuple[int, int, int] = (32, 48, 96)
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    kind_drop_rate: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875  # evaluation: resize the short side to img_size / crop_pct, centre-crop
    norm_eps: float = 1e-5  # every LayerNorm's epsilon; 1e-6 when the patch stream comes from timm/torchvision

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of builtins (tuples become lists), safe for ``torch.load(weights_only=True)``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"Unknown model config keys {unknown}. Expected a subset of {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


SIZES: dict[str, dict[str, Any]] = {
    # Teaching size: trains on a 2-core CPU in minutes (SynthShapes v2, 12 classes); 8x8 grids of CNN
    # tokens that each see 19 px, and of 8-px patches.
    "tiny": dict(
        num_classes=12, img_size=64, patch_size=8, trunk="local",
        embed_dim=64, depth=4, num_heads=4, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_pct=1.0,
    ),
    # ImageNet sizes: ResNet-50 to layer3 beside ViT-S/16 or ViT-B/16.
    "small": dict(
        num_classes=1000, img_size=224, patch_size=16, trunk="resnet50",
        embed_dim=384, depth=12, num_heads=6, drop_path_rate=0.1,
    ),
    "base": dict(
        num_classes=1000, img_size=224, patch_size=16, trunk="resnet50",
        embed_dim=768, depth=12, num_heads=12, drop_path_rate=0.1,
    ),
}


def make_config(arch: str, size: str, **overrides: Any) -> ModelConfig:
    """The config of ``arch`` at ``size``, with keyword ``overrides`` (unknown keys raise)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {arch!r}. Expected one of {list(ARCHITECTURES)}")
    if size not in SIZES:
        raise ValueError(f"Unknown size {size!r}. Expected one of {list(SIZES)}")
    base = ModelConfig(arch=arch, size=size, **SIZES[size])
    allowed = {f.name for f in fields(ModelConfig)} - {"arch", "size"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"Unknown model options {unknown}. Expected some of {sorted(allowed)}")
    config = replace(base, **overrides)
    if config.embed_dim % config.num_heads:
        raise ValueError(f"embed_dim {config.embed_dim} is not divisible by num_heads {config.num_heads}")
    return config
