"""Patch-stream weights from a ViT or DeiT state dict on disk: torchvision or timm, renamed to ours.

A torchvision ``VisionTransformer`` (``vit_b_16``, ...) or a timm ``VisionTransformer``
(``deit_small_patch16_224``, ``vit_base_patch16_224``, ...) maps onto our :class:`ViT` one to one,
with three rewrites that change no output:

- the fused input projection (timm ``attn.qkv``, torchvision ``in_proj``) is split into our
  ``attn.q`` (its first ``D`` rows) and ``attn.kv`` (the other ``2D``);
- the source adds a position embedding to the class token; as both are constants, their sum
  becomes our class token (ours has no position embedding of its own);
- LayerNorm epsilon is the source library's, ``1e-6`` for both (a state dict does not store it),
  and goes into the model config as ``norm_eps``.

The number of heads is not stored in a state dict either: the model's (``num_heads`` of its
size) must be the source's (ViT-S: 6, ViT-B: 12, as our ``small`` and ``base``). Nothing is
downloaded; the path is the user's.

A ViT checkpoint of this project (``python -m train --arch vit``, a file of
:func:`tokenfusion.checkpoint.save_checkpoint`) is read too: its names are ours already, and its
LayerNorm epsilon and grid are those of its config. This is how a fusion model starts its patch
stream from a ViT trained here. Likewise a ``cnn`` checkpoint of this project gives its trunk
(:func:`load_trunk`) to a fusion model with the same trunk.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import TokenFusionModel
from .config import ModelConfig
from .trunks import ResNet50Trunk

__all__ = ["PATCH_STREAMS", "WRAPPER_PREFIXES", "SourceViT", "file_record", "load_patch_stream", "load_trunk", "read_state_dict",
           "read_vit_weights", "strip_prefixes"]

SOURCE_NORM_EPS = 1e-6  # LayerNorm epsilon of torchvision's and timm's ViTs

# Our ViT's names -> each architecture's names for its patch stream. ``late``'s final norm and
# head follow its fusion blocks, not the patch stream, so they start fresh.
PATCH_STREAMS: dict[str, dict[str, str]] = {
    "vit": {"patch_tokens": "patch_tokens", "cls_token": "cls_token", "blocks": "blocks", "norm": "norm", "head": "head"},
    "layerwise": {"patch_tokens": "patch_tokens", "cls_token": "cls_token", "blocks": "blocks", "norm": "norm", "head": "head"},
    "early": {"patch_tokens": "patch_tokens", "cls_token": "cls_token", "blocks": "blocks", "norm": "norm", "head": "head"},
    "late": {"patch_tokens": "patch_tokens", "cls_token": "patch_cls_token", "blocks": "patch_blocks"},
}

# Source key -> our ViT's key, per library; ``qkv`` and ``pos_embed`` are split afterwards.
_RENAMES: dict[str, list[tuple[str, str]]] = {
    "timm": [
        (r"cls_token", "cls_token"),
        (r"pos_embed", "pos_embed"),
        (r"patch_embed\.proj\.(weight|bias)", r"patch_tokens.proj.\1"),
        (r"blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj)\.(weight|bias)", r"blocks.\1.\2.\3"),
        (r"blocks\.(\d+)\.mlp\.fc1\.(weight|bias)", r"blocks.\1.mlp.0.\2"),
        (r"blocks\.(\d+)\.mlp\.fc2\.(weight|bias)", r"blocks.\1.mlp.3.\2"),
        (r"norm\.(weight|bias)", r"norm.\1"),
        (r"head\.(weight|bias)", r"head.\1"),
    ],
    "torchvision": [
        (r"class_token", "cls_token"),
        (r"encoder\.pos_embedding", "pos_embed"),
        (r"conv_proj\.(weight|bias)", r"patch_tokens.proj.\1"),
        (r"encoder\.layers\.encoder_layer_(\d+)\.ln_1\.(weight|bias)", r"blocks.\1.norm1.\2"),
        (r"encoder\.layers\.encoder_layer_(\d+)\.ln_2\.(weight|bias)", r"blocks.\1.norm2.\2"),
        (r"encoder\.layers\.encoder_layer_(\d+)\.self_attention\.in_proj_(weight|bias)", r"blocks.\1.attn.qkv.\2"),
        (r"encoder\.layers\.encoder_layer_(\d+)\.self_attention\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
        (r"encoder\.layers\.encoder_layer_(\d+)\.mlp\.([03])\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
        (r"encoder\.ln\.(weight|bias)", r"norm.\1"),
        (r"heads\.head\.(weight|bias)", r"head.\1"),
    ],
}

# What the source parts that our blocks cannot represent are, for the error message.
_UNSUPPORTED = {
    "ls1": "layer scale (DeiT III)", "ls2": "layer scale (DeiT III)", "dist_token": "a distillation token (distilled DeiT)",
    "head_dist": "a distillation head (distilled DeiT)", "reg_token": "register tokens", "norm_pre": "a pre-norm before the blocks (CLIP)",
    "fc_norm": "a norm after average pooling", "q_norm": "a query norm", "k_norm": "a key norm",
    "pre_logits": "a pre-logits layer", "attn_pool": "attention pooling",
}


@dataclass(frozen=True)
class SourceViT:
    """A source ViT's weights under our :class:`ViT`'s parameter names.

    ``state`` holds ``patch_tokens.proj.*``, ``patch_tokens.pos_embed.weight`` ``(1, h*w, D)`` on
    ``grid``, ``cls_token`` ``(1, 1, D)`` (its position embedding folded in), ``blocks.i.*``,
    ``norm.*`` and ``head.*``.
    """

    path: Path
    library: str  # "timm", "torchvision" or "Token Fusion Lab"
    state: dict[str, Tensor]
    grid: tuple[int, int]
    norm_eps: float = SOURCE_NORM_EPS

    @property
    def embed_dim(self) -> int:
        return self.state["patch_tokens.proj.weight"].shape[0]

    @property
    def patch_size(self) -> int:
        return self.state["patch_tokens.proj.weight"].shape[-1]

    @property
    def depth(self) -> int:
        return len({k.split(".")[1] for k in self.state if k.startswith("blocks.")})

    @property
    def mlp_hidden(self) -> int:
        return self.state["blocks.0.mlp.0.weight"].shape[0]

    @property
    def num_classes(self) -> int | None:
        head = self.state.get("head.weight")
        return None if head is None else head.shape[0]

    def describe(self) -> str:
        return (f"{self.path.name} ({self.library} ViT: width {self.embed_dim}, depth {self.depth}, "
                f"patch {self.patch_size}, MLP {self.mlp_hidden})")


#: Prefixes a wrapper adds to every key: DDP's ``module.``, ``torch.compile``'s ``_orig_mod.``.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_prefixes(key: str) -> str:
    """``key`` without the prefixes of :data:`WRAPPER_PREFIXES`, however nested."""
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def _load(path: Path) -> Any:
    """What ``torch.load(path, weights_only=True)`` returns, or ``ValueError`` saying the file is not that."""
    if not path.is_file():
        raise ValueError(f"No weights file at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for files it cannot parse
        raise ValueError(f"{path.name} is not a state dict that loads with weights_only=True ({type(e).__name__})") from None


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict saved with ``torch.save`` (also inside ``{"model": ...}`` or ``{"state_dict": ...}``),
    read with ``weights_only=True``; DDP and ``torch.compile`` prefixes stripped. Raises ``ValueError``
    saying what the file is not."""
    path = Path(path)
    return _state_of(_load(path), path)


def _state_of(state: Any, path: Path) -> dict[str, Tensor]:
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path.name} is not a state dict (a dict of tensors)")
    return {strip_prefixes(k): v for k, v in state.items()}


def read_vit_weights(path: str | Path) -> SourceViT:
    """Read a torchvision or timm ViT state dict saved with ``torch.save`` (a DeiT release file,
    ``{"model": state_dict}``, is accepted too) and rename it to our ViT's names.

    Raises ``ValueError`` naming what does not fit when the file is not such a state dict or holds
    parts our blocks cannot represent.
    """
    path = Path(path)
    payload = _load(path)
    if (config := _own_config(payload)) is not None:
        return _own_vit(config, payload, path)
    state = _state_of(payload, path)
    if "conv_proj.weight" in state:
        library = "torchvision"
    elif "patch_embed.proj.weight" in state:
        library = "timm"
    else:
        raise ValueError(
            f"{path.name} is not a torchvision VisionTransformer or timm ViT/DeiT state dict: it has neither "
            f"'conv_proj.weight' nor 'patch_embed.proj.weight' (first keys: {sorted(state)[:5]})."
        )
    renamed, unused = _rename(state, _RENAMES[library])
    if unused:
        kinds = sorted({desc for key in unused for part, desc in _UNSUPPORTED.items() if part in key.split(".")})
        raise ValueError(
            f"{path.name} ({library}) holds parts our ViT blocks cannot represent, so its outputs could not be "
            f"reproduced: {unused[:6]}" + (f" ({', '.join(kinds)})" if kinds else "")
            + ". Supported: plain ViT/DeiT with a class token, fused qkv with bias and a linear head."
        )
    return _split(renamed, path, library)


def _own_config(payload: Any) -> ModelConfig | None:
    """The config of a checkpoint of this project, or ``None`` when ``payload`` is not one."""
    if isinstance(payload, dict) and isinstance(payload.get("config"), dict) and "arch" in payload["config"]:
        return ModelConfig.from_dict(payload["config"]).validate()
    return None


def load_trunk(model: TokenFusionModel, path: str | Path) -> dict[str, Any]:
    """Copy a trunk on disk into ``model.trunk`` and return the record of where it came from.

    ``path`` is a ``cnn`` checkpoint of this project with the model's trunk (its names are ours), or
    a torchvision ResNet-50 state dict for a ``resnet50`` trunk (``layer4`` and ``fc`` unused).
    """
    path = Path(path)
    trunk = getattr(model, "trunk", None)
    payload = _load(path)
    config = _own_config(payload)
    if config is None:
        if not isinstance(trunk, ResNet50Trunk):
            raise ValueError(f"{path.name} is not a Token Fusion Lab checkpoint, and a torchvision ResNet-50 state dict "
                             f"fits only a ResNet-50 trunk; {model.config.arch}/{model.config.size} has "
                             f"{model.config.trunk!r}.")
        try:
            trunk.load_torchvision_state(_state_of(payload, path))
        except ValueError as e:
            raise ValueError(f"{path.name} is {e}") from None
        return file_record(path, "torchvision ResNet-50 state dict", ["trunk"], ["stem and layer1-3; layer4 and fc unused"])
    mine = (model.config.trunk, model.config.tiny_trunk_channels)
    if config.arch != "cnn" or trunk is None or (config.trunk, config.tiny_trunk_channels) != mine:
        raise ValueError(f"{path.name} is a Token Fusion Lab {config.arch!r} checkpoint with trunk {config.trunk!r}; "
                         f"a trunk starts from a 'cnn' one with the model's trunk ({mine[0]!r}, channels {mine[1]}).")
    state = _state_of(payload, path)
    trunk.load_state_dict({k.removeprefix("trunk."): v.float() for k, v in state.items() if k.startswith("trunk.")})
    return file_record(path, "Token Fusion Lab cnn checkpoint", ["trunk"], ["the trunk; the head is not used"])


def _own_vit(config: ModelConfig, payload: dict[str, Any], path: Path) -> SourceViT:
    """The weights of a checkpoint of this project, which must be a ``vit``'s."""
    if config.arch != "vit":
        raise ValueError(f"{path.name} is a Token Fusion Lab {config.arch!r} checkpoint; a patch stream starts "
                         "from a 'vit' one (python -m train --arch vit).")
    state = {k: v.float() for k, v in _state_of(payload, path).items()}
    side = config.img_size // config.patch_size
    return SourceViT(path=path, library="Token Fusion Lab", state=state, grid=(side, side), norm_eps=config.norm_eps)


def load_patch_stream(model: TokenFusionModel, source: SourceViT) -> dict[str, Any]:
    """Copy ``source`` into ``model``'s patch stream and return the record of what came from where.

    The position embedding is resampled (bicubic, antialiased, as timm does) when the model's
    patch grid differs; the head is kept only when the class counts match.
    """
    config = model.config
    names = PATCH_STREAMS.get(config.arch)
    if names is None:
        raise ValueError(f"{config.arch!r} has no patch stream. Patch-stream weights fit {sorted(PATCH_STREAMS)}.")
    wanted = {"width": (source.embed_dim, config.embed_dim), "depth": (source.depth, config.depth),
              "patch size": (source.patch_size, config.patch_size),
              "MLP width": (source.mlp_hidden, int(config.embed_dim * config.mlp_ratio))}
    wrong = [f"{what} {have} vs {need}" for what, (have, need) in wanted.items() if have != need]
    if wrong:
        raise ValueError(
            f"{source.describe()} does not fit {config.arch}/{config.size}: {', '.join(wrong)} (file vs model). "
            "Pick the size of the same shape (ViT-S/16: small, ViT-B/16: base) or override the model's fields."
        )
    grid = model.get_submodule(f"{names['patch_tokens']}.pos_embed").grid
    own = source.library == "Token Fusion Lab"
    notes = [] if own else ["class token: the file's class token plus its position embedding"]
    state = dict(source.state)
    if grid != source.grid:
        state["patch_tokens.pos_embed.weight"] = _resample(state["patch_tokens.pos_embed.weight"], source.grid, grid)
        notes.append(f"position embedding resampled from {source.grid[0]}x{source.grid[1]} to {grid[0]}x{grid[1]} (bicubic)")
    if "head" in names and source.num_classes != config.num_classes:
        notes.append(f"head: fresh ({source.num_classes} classes in the file, {config.num_classes} in the model)")
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    if "head" not in names:
        state = {k: v for k, v in state.items() if not k.startswith(("head.", "norm."))}
        notes.append("the file's final norm and head are not used (the model's follow its fusion blocks)")
    mapped = {_target(names, k): v for k, v in state.items()}
    modules = sorted({_target(names, k).split(".")[0] for k in state})
    own = model.state_dict()
    missing = sorted(k for k in own if k.split(".")[0] in modules and k not in mapped)
    if missing:
        raise ValueError(f"{source.describe()} lacks parts of the patch stream: {missing[:6]}.")
    with torch.no_grad():
        for key, value in mapped.items():
            own[key].copy_(value)
    return file_record(source.path, f"{source.library} ViT state dict", modules, notes)


def file_record(path: str | Path, kind: str, modules: list[str], notes: list[str] | None = None) -> dict[str, Any]:
    """Provenance of one part: the file (absolute path, SHA-256), its format, the model's
    top-level modules it filled, and notes on what was adapted."""
    path = Path(path).resolve()
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256")
    return {"path": str(path), "sha256": digest.hexdigest(), "format": kind, "modules": modules, "notes": notes or []}


def _target(names: dict[str, str], key: str) -> str:
    """Our ViT's ``key`` under the model's name for its top-level module."""
    head, _, rest = key.partition(".")
    return f"{names[head]}.{rest}" if rest else names[head]


def _rename(state: dict[str, Tensor], rules: list[tuple[str, str]]) -> tuple[dict[str, Tensor], list[str]]:
    renamed, unused = {}, []
    for key, value in state.items():
        for pattern, target in rules:
            if re.fullmatch(pattern, key):
                renamed[re.sub(pattern, target, key)] = value
                break
        else:
            unused.append(key)
    return renamed, unused


def _split(state: dict[str, Tensor], path: Path, library: str) -> SourceViT:
    """Split ``qkv`` into ``q``/``kv`` and the position embedding into class and patch parts."""
    pos = state.pop("pos_embed", None)
    cls = state.pop("cls_token", None)
    if pos is None or cls is None:
        raise ValueError(f"{path.name} ({library}) has no {'position embedding' if pos is None else 'class token'}.")
    side = math.isqrt(pos.shape[1] - 1)
    if side * side != pos.shape[1] - 1:
        raise ValueError(
            f"{path.name}: a position embedding of {pos.shape[1]} entries is not a class token plus a square patch grid."
        )
    out = {"cls_token": cls + pos[:, :1], "patch_tokens.pos_embed.weight": pos[:, 1:]}
    for key, value in state.items():
        if ".attn.qkv." in key:
            dim = value.shape[0] // 3
            out[key.replace(".qkv.", ".q.")] = value[:dim]
            out[key.replace(".qkv.", ".kv.")] = value[dim:]
        else:
            out[key] = value
    return SourceViT(path=path, library=library, state=out, grid=(side, side))


def _resample(pos: Tensor, old: tuple[int, int], new: tuple[int, int]) -> Tensor:
    """``(1, h0*w0, D)`` on ``old`` to ``(1, h*w, D)`` on ``new``."""
    grid = pos.reshape(1, *old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=new, mode="bicubic", antialias=True, align_corners=False)
    return grid.flatten(2).transpose(1, 2).to(pos.dtype)
