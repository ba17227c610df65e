"""Transformer blocks: fused attention by default, explicit weights when traced."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import MLP, StochasticDepth

__all__ = ["Attention", "Block", "CrossBlock"]


class Attention(nn.Module):
    """Multi-head attention of ``queries`` over ``context`` (self-attention when they are one tensor).

    ``forward`` runs ``scaled_dot_product_attention``; ``forward_with_weights`` computes the
    softmax explicitly and also returns the weights ``(B, heads, N_q, N_k)``.
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

    def forward(self, queries: Tensor, context: Tensor | None = None) -> Tensor:
        q, k, v = self._heads(queries, queries if context is None else context)
        return self._merge(F.scaled_dot_product_attention(q, k, v))

    def forward_with_weights(self, queries: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        q, k, v = self._heads(queries, queries if context is None else context)
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

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward_with_weights(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """As ``forward``, also returning the attention weights ``(B, heads, N, N)``."""
        update, weights = self.attn.forward_with_weights(self.norm1(x))
        x = x + self.drop_path(update)
        return x + self.drop_path(self.mlp(self.norm2(x))), weights


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

    def update(self, x: Tensor, context: Tensor) -> Tensor:
        """The gated update added to ``x``: ``(B, N_q, D)``."""
        return torch.tanh(self.gate) * self.attn(self.norm_q(x), self.norm_kv(context))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        return x + self.update(x, context)

    def forward_with_weights(self, x: Tensor, context: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns the new ``x``, the cross-attention weights ``(B, heads, N_q, N_k)`` and the update."""
        out, weights = self.attn.forward_with_weights(self.norm_q(x), self.norm_kv(context))
        update = torch.tanh(self.gate) * out
        return x + update, weights, update
