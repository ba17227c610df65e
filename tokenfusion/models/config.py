"""Model configuration: one dataclass for every architecture, one table of sizes."""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any

__all__ = ["ARCHITECTURES", "KIND_DROP_KINDS", "POSITION_EMBEDDINGS", "WEIGHT_INITS", "RANGES", "SIZES", "ModelConfig", "make_config"]

ARCHITECTURES = ("cnn", "vit", "late", "early", "layerwise")
#: Which kinds of token kind dropout may take from an image (``ModelConfig.kind_drop_kinds``).
KIND_DROP_KINDS = ("both", "cnn", "patch")
#: How a model's linear layers are initialised (``ModelConfig.weight_init``).
WEIGHT_INITS = ("trunc_normal", "xavier")
#: The kinds of position embedding a model's token modules can have (``ModelConfig.pos_embed``).
POSITION_EMBEDDINGS = ("learned", "sincos")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Accepted range of each numeric field (of each entry of a triple), both ends included. Bounds that no
#: model of the field comes near keep a damaged or hostile config from describing an absurd model.
RANGES: dict[str, tuple[float, float]] = {
    "num_classes": (1, 100_000), "img_size": (8, 2048), "patch_size": (1, 2048), "embed_dim": (1, 16_384),
    "depth": (1, 128), "num_heads": (1, 1024), "mlp_ratio": (0.01, 64.0), "fusion_depth": (0, 128),
    "tiny_trunk_channels": (1, 4096), "drop_rate": (0.0, 1.0), "drop_path_rate": (0.0, 1.0),
    "kind_drop_rate": (0.0, 1.0),
    "mean": (-10.0, 10.0), "std": (1e-6, 10.0), "crop_pct": (0.01, 1.0), "norm_eps": (1e-12, 1.0),
}
_TRIPLES = ("tiny_trunk_channels", "mean", "std")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved whole inside every checkpoint.

    ``trunk`` is ``"local"`` (the teaching trunk: stride 8, receptive field 19 px), ``"tiny"`` (the
    SynthShapes v1 trunk: stride 8, receptive field 39 px) or ``"resnet50"`` (torchvision ResNet-50 up
    to ``layer3``, stride 16). ``mean``/``std`` are the input normalisation the model expects on images
    scaled to [0, 1]; ``crop_pct`` the share of the image its evaluation transform keeps.
    ``kind_drop_rate`` (fusion models, training only): the share of training images that see one kind
    of token alone, the other zeroed; ``kind_drop_kinds`` says which kind they lose: ``"both"`` (half
    of them lose their CNN tokens, half their patch tokens), ``"cnn"`` or ``"patch"`` (all of them that one).
    ``pos_embed``: every token module's position embedding, ``"learned"`` or fixed ``"sincos"``
    (:class:`~tokenfusion.models.pos_embed.PositionEmbedding2d`). ``weight_init``: every linear layer's
    initial weights, ``"trunc_normal"`` (std 0.02, as timm's ViTs: sized for widths of several hundred) or
    ``"xavier"`` (uniform, scaled to each layer's fan-in and fan-out, as torchvision's ViT MLPs and MAE).
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
    kind_drop_kinds: str = "both"
    pos_embed: str = "learned"
    weight_init: str = "trunc_normal"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.875  # evaluation: resize the short side to img_size / crop_pct, centre-crop
    norm_eps: float = 1e-5  # every LayerNorm's epsilon; 1e-6 when the patch stream comes from timm/torchvision

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of builtins (tuples become lists), safe for ``torch.load(weights_only=True)``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown or missing keys are an error (the values are checked by
        :meth:`validate`)."""
        known = {f.name: f for f in fields(cls)}
        required = [k for k, f in known.items() if f.default is MISSING and f.default_factory is MISSING]
        unknown = sorted(map(str, set(data) - set(known)))
        missing = [k for k in required if k not in data]
        problems = [f"{what} keys {keys}" for what, keys in (("unknown", unknown), ("missing", missing)) if keys]
        if problems:
            raise ValueError(f"{'; '.join(problems)} (expected keys from {sorted(known)})")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def validate(self) -> ModelConfig:
        """This config, once every field has its type and lies in :data:`RANGES`, the architecture is
        known, ``num_heads`` divides ``embed_dim`` and a patch fits the image; else a ``ValueError``
        naming the first field that does not, what it holds and what is accepted."""
        for f in fields(self):
            problem = _value_problem(f.name, f.type, getattr(self, f.name))
            if problem:
                raise ValueError(f"{f.name} {problem}")
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.arch!r}. Expected one of {list(ARCHITECTURES)}; "
                             "a newer tokenfusion may know it")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}, so "
                             "attention cannot split it into heads")
        if self.kind_drop_kinds not in KIND_DROP_KINDS:
            raise ValueError(f"kind_drop_kinds is {self.kind_drop_kinds!r}, expected one of {list(KIND_DROP_KINDS)}")
        if self.weight_init not in WEIGHT_INITS:
            raise ValueError(f"weight_init is {self.weight_init!r}, expected one of {list(WEIGHT_INITS)}")
        if self.pos_embed not in POSITION_EMBEDDINGS:
            raise ValueError(f"pos_embed is {self.pos_embed!r}, expected one of {list(POSITION_EMBEDDINGS)}")
        if self.pos_embed == "sincos" and self.embed_dim % 4:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by 4, as a sine-cosine position "
                             "embedding needs (a quarter of the channels per axis and function)")
        if self.patch_size > self.img_size:
            raise ValueError(f"patch_size {self.patch_size} is larger than img_size {self.img_size}")
        return self


def shown(value: Any) -> str:
    """``value`` for an error message: its repr when short, and its type."""
    text = repr(value)
    return f"{text} ({type(value).__name__})" if len(text) <= 40 else f"a {type(value).__name__}"


def _value_problem(key: str, kind: str, value: Any) -> str | None:
    """Why ``value`` cannot be field ``key`` (annotated ``kind``), or None when it can."""
    if kind == "str":
        return None if isinstance(value, str) and len(value) <= 64 else f"is {shown(value)}, expected a short string"
    if key in _TRIPLES:
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            return f"is {shown(value)}, expected 3 numbers"
        items = value
    else:
        items = [value]
    whole = kind == "int" or key == "tiny_trunk_channels"
    low, high = RANGES.get(key, (-math.inf, math.inf))
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int if whole else (int, float)):
            return f"is {shown(value)}, expected {'an integer' if whole else 'a number'}" + (" per entry" * (key in _TRIPLES))
        if not (math.isfinite(item) and low <= item <= high):
            return f"is {shown(value)}, outside the accepted range {low} to {high}"
    return None


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
    """The config of ``arch`` at ``size``, with keyword ``overrides``; unknown keys and invalid values raise
    (:meth:`ModelConfig.validate`)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {arch!r}. Expected one of {list(ARCHITECTURES)}")
    if size not in SIZES:
        raise ValueError(f"Unknown size {size!r}. Expected one of {list(SIZES)}")
    base = ModelConfig(arch=arch, size=size, **SIZES[size])
    allowed = {f.name for f in fields(ModelConfig)} - {"arch", "size"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"Unknown model options {unknown}. Expected some of {sorted(allowed)}")
    return replace(base, **overrides).validate()
