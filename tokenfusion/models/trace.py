"""The trace: what a traced forward saw inside the model."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .layout import TokenLayout

__all__ = ["CrossAttentionTrace", "FusionWeights", "Trace"]


@dataclass
class CrossAttentionTrace:
    """One ``layerwise`` cross-attention: patch-stream queries over CNN keys."""

    weights: Tensor  # (B, heads, N_q, N_k), rows sum to 1
    query_layout: TokenLayout
    key_layout: TokenLayout
    gate: float  # tanh(g) of this layer
    update_ratio: Tensor  # (B,) norm of the injected update over norm of the patch stream


@dataclass(frozen=True)
class FusionWeights:
    """How much each kind of token a fusion model uses, layer by layer.

    ``cls_share[kind]`` and ``mean_share[kind]`` are ``(B, L, heads)``: the share of attention
    mass that the class token (position 0), or the mean over all queries, puts on ``kind``
    tokens, for every layer in ``layers`` whose sequence holds both CNN and patch tokens.
    ``gates`` ``(L,)`` and ``update_ratio`` ``(B, L)`` are set for ``layerwise`` only.
    """

    layers: list[str]
    cls_share: dict[str, Tensor]
    mean_share: dict[str, Tensor]
    gates: Tensor | None = None
    update_ratio: Tensor | None = None


@dataclass
class Trace:
    """Filled by ``model(x, trace=True)``. Keys are the names of the modules that produced each
    entry (``"blocks.3"``, ``"fusion_blocks.0"``, ``"cross_blocks.1"``), so that a CAM can target
    ``model.get_submodule(name)`` and reshape its tokens with ``layouts[name]``."""

    layouts: dict[str, TokenLayout] = field(default_factory=dict)
    attention: dict[str, Tensor] = field(default_factory=dict)  # (B, heads, N, N)
    tokens: dict[str, Tensor] = field(default_factory=dict)  # block outputs, (B, N, D)
    cross_attention: dict[str, CrossAttentionTrace] = field(default_factory=dict)
    cnn_features: list[Tensor] = field(default_factory=list)  # trunk stages, (B, C, h, w)

    def record(self, name: str, layout: TokenLayout, weights: Tensor, tokens: Tensor) -> None:
        self.layouts[name] = layout
        self.attention[name] = weights
        self.tokens[name] = tokens

    @property
    def fusion(self) -> FusionWeights:
        layers = [n for n, lay in self.layouts.items() if {"cnn", "patch"} <= set(lay.kinds)]
        cls_share: dict[str, list[Tensor]] = {}
        mean_share: dict[str, list[Tensor]] = {}
        for name in layers:
            layout, weights = self.layouts[name], self.attention[name]
            for kind in layout.kinds:
                mass = weights[..., layout.mask(kind).to(weights.device)].sum(-1)  # (B, heads, N)
                cls_share.setdefault(kind, []).append(mass[..., 0])
                mean_share.setdefault(kind, []).append(mass.mean(-1))
        gates = ratio = None
        if self.cross_attention:
            gates = torch.tensor([c.gate for c in self.cross_attention.values()])
            ratio = torch.stack([c.update_ratio for c in self.cross_attention.values()], dim=1)
        return FusionWeights(
            layers=layers,
            cls_share={k: torch.stack(v, dim=1) for k, v in cls_share.items()},
            mean_share={k: torch.stack(v, dim=1) for k, v in mean_share.items()},
            gates=gates,
            update_ratio=ratio,
        )
