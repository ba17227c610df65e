"""Attention weights of another library's attention modules, read while their fused path runs.

timm's ``Attention`` and torchvision's ``nn.MultiheadAttention`` compute attention with
``scaled_dot_product_attention`` and never form the weights. A reader hooks the module's own
declared parts, recomputes ``softmax(q k^T / sqrt(d))`` from the queries and keys the fused call
receives, and leaves the module's output untouched, so the traced logits are the plain ones. A module
of another type is refused when the model is adapted, never read as an empty map.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["AttentionReader", "reader_for"]


class AttentionReader:
    """Holds the ``(B, heads, N_q, N_k)`` softmax weights of one forward of ``module`` in ``weights``."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.weights: Tensor | None = None

    def attach(self) -> list[RemovableHandle]:
        raise NotImplementedError


class TimmAttentionReader(AttentionReader):
    """timm ``Attention``: queries and keys as its ``q_norm`` and ``k_norm`` return them ``(B, heads, N, d)``
    (identities unless the model normalises them), scaled by its own ``scale``."""

    def attach(self) -> list[RemovableHandle]:
        parts: dict[str, Tensor] = {}

        def keep(name: str):
            def hook(_: nn.Module, __: tuple, output: Tensor) -> None:
                parts[name] = output.detach()
                if len(parts) == 2:
                    q, k = parts.pop("q"), parts.pop("k")
                    self.weights = torch.softmax((q * self.module.scale) @ k.transpose(-2, -1), dim=-1)
            return hook

        return [self.module.q_norm.register_forward_hook(keep("q")), self.module.k_norm.register_forward_hook(keep("k"))]


class MultiheadAttentionReader(AttentionReader):
    """torchvision's ``nn.MultiheadAttention`` (packed input projection): queries and keys projected by
    its ``in_proj_weight`` from the inputs of its call."""

    def attach(self) -> list[RemovableHandle]:
        def hook(module: nn.MultiheadAttention, args: tuple, kwargs: dict[str, Any]) -> None:
            query = args[0] if args else kwargs["query"]
            key = args[1] if len(args) > 1 else kwargs["key"]
            if not module.batch_first:
                query, key = query.transpose(0, 1), key.transpose(0, 1)
            dim, heads = module.embed_dim, module.num_heads
            weight, bias = module.in_proj_weight, module.in_proj_bias
            q = F.linear(query, weight[:dim], None if bias is None else bias[:dim])
            k = F.linear(key, weight[dim:2 * dim], None if bias is None else bias[dim:2 * dim])
            q, k = (t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for t in (q, k))
            self.weights = torch.softmax(q @ k.transpose(-2, -1) / (dim // heads) ** 0.5, dim=-1).detach()

        return [self.module.register_forward_pre_hook(hook, with_kwargs=True)]


def reader_for(module: nn.Module) -> type[AttentionReader]:
    """The reader of ``module``'s type; ``TypeError`` for a type whose weights cannot be read."""
    from timm.layers import Attention as TimmAttention

    if type(module) is TimmAttention:
        return TimmAttentionReader
    if type(module) is nn.MultiheadAttention and module._qkv_same_embed_dim:
        return MultiheadAttentionReader
    raise TypeError(f"Cannot read attention weights from a {type(module).__module__}.{type(module).__name__}. "
                    "Readable: timm.layers.Attention, torch.nn.MultiheadAttention with one packed projection.")
