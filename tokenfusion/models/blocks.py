"""Transformer blocks: fused attention by default, explicit weights when traced."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import MLP, StochasticDepth

__all__ = ["Attention", "Block", "CrossBlock"]


class Attention(nn.Module):
    """Multi-head attention of ``queries`` over ``context`` (self-attention when they are one tensor).

    One forward path: ``scaled_dot_product_attention`` by default; with ``need_weights=True`` the
    softmax is computed explicitly and its weights ``(B, heads, N_q, N_k)`` returned (as
    torchvision's ``need_weights`` and timm's ``fused_attn`` switch do).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, queries: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, d = queries.shape
        q = self.q(queries).reshape(b, n, self.num_heads, -1).transpose(1, 2)
        k, v = self.kv(context).reshape(b, context.shape[1], 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return q, k, v

    def _merge(self, out: Tensor) -> Tensor:
        return self.proj(out.transpose(1, 2).flatten(2))

    def forward(
        self, queries: Tensor, context: Tensor | None = None, *, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """``(out (B, N_q, D), weights (B, heads, N_q, N_k) or None)``: fused attention unless
        ``need_weights``, then an explicit softmax whose weights are returned."""
        q, k, v = self._heads(queries, queries if context is None else context)
        if not need_weights:
            return self._merge(F.scaled_dot_product_attention(q, k, v)), None
        weights = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        return self._merge(weights @ v), weights


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``; ``(B, N, D)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, [int(dim * mlp_ratio), dim], activation_layer=nn.GELU, dropout=drop)
        self.drop_path = StochasticDepth(drop_path, "row")

    def forward(self, x: Tensor, *, need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``x (B, N, D)``; with ``need_weights``, ``(x, attention weights (B, heads, N, N))``."""
        update, weights = self.attn(self.norm1(x), need_weights=need_weights)
        x = x + self.drop_path(update)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return (x, weights) if need_weights else x


class CrossBlock(nn.Module):
    """Gated cross-attention: ``x + tanh(gate) * attn(norm(x), norm(context))``.

    The gate starts at 0, so at initialisation the block is the identity and the patch stream
    it sits in behaves as a plain ViT.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, context: Tensor, *, need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``x + tanh(gate) * attn`` ``(B, N_q, D)``; with ``need_weights``, also the cross-attention
        weights ``(B, heads, N_q, N_k)``."""
        out, weights = self.attn(self.norm_q(x), self.norm_kv(context), need_weights=need_weights)
        x = x + torch.tanh(self.gate) * out
        return (x, weights) if need_weights else x
