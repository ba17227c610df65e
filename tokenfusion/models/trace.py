"""The trace: what a traced forward saw inside the model, keyed by stream."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from .layout import TokenLayout

__all__ = ["CrossAttentionTrace", "StreamTrace", "Trace"]


@dataclass
class StreamTrace:
    """One stream's sequence through its blocks: one ``layout`` for every layer; ``attention[i]``
    ``(B, heads, N, N)`` (rows sum to 1) and ``tokens[i]`` ``(B, N, D)`` the output of ``layers[i]``."""

    layout: TokenLayout
    layers: list[str] = field(default_factory=list)
    attention: list[Tensor] = field(default_factory=list)
    tokens: list[Tensor] = field(default_factory=list)


@dataclass
class CrossAttentionTrace:
    """One ``layerwise`` cross-attention: patch-stream queries over CNN keys."""

    weights: Tensor  # (B, heads, N_q, N_k), rows sum to 1
    query_layout: TokenLayout
    key_layout: TokenLayout
    gate: float  # tanh(g) of this layer
    update_ratio: Tensor  # (B,) norm of the injected update over norm of the patch stream


@dataclass
class Trace:
    """Filled by ``model(x, trace=True)``.

    ``streams`` is keyed by the names of ``model.structure.streams``; layers are module names
    (``"blocks.3"``, ``"fusion_blocks.0"``), so that a CAM can target ``model.get_submodule(name)``.
    ``cross_attention`` is keyed by cross-attention module (``"cross_blocks.1"``), ``cnn_features``
    holds the trunk stages ``(B, C, h, w)``, shallow to deep.
    """

    streams: dict[str, StreamTrace] = field(default_factory=dict)
    cross_attention: dict[str, CrossAttentionTrace] = field(default_factory=dict)
    cnn_features: list[Tensor] = field(default_factory=list)

    def record(self, stream: str, layer: str, layout: TokenLayout, weights: Tensor, tokens: Tensor) -> None:
        entry = self.streams.setdefault(stream, StreamTrace(layout))
        entry.layers.append(layer)
        entry.attention.append(weights)
        entry.tokens.append(tokens)

    @property
    def layouts(self) -> dict[str, TokenLayout]:
        """Every self-attention layer's token layout, in forward order."""
        return {layer: s.layout for s in self.streams.values() for layer in s.layers}

    @property
    def attention(self) -> dict[str, Tensor]:
        """Every self-attention layer's weights ``(B, heads, N, N)``, in forward order."""
        return {layer: w for s in self.streams.values() for layer, w in zip(s.layers, s.attention)}

    @property
    def tokens(self) -> dict[str, Tensor]:
        """Every block's output ``(B, N, D)``, in forward order."""
        return {layer: t for s in self.streams.values() for layer, t in zip(s.layers, s.tokens)}
