"""Attention weights of another library's attention modules, read while their fused path runs.

timm's ``Attention`` and torchvision's ``nn.MultiheadAttention`` compute attention with
``scaled_dot_product_attention`` and never form the weights. A reader hooks the module's own
declared parts, recomputes ``A = softmax(q k^T / sqrt(d))`` from the queries and keys the fused call
receives, and leaves the module's output untouched, so the traced logits are the plain ones. A module
of another type is refused when the model is adapted, never read as an empty map.

When gradients are on, ``A`` also enters the graph, so that relevance methods get ``d logit / d A``:
the reader adds ``A v - (A v).detach()`` (zero in value) where the module's attention output ``A v``
stands, with ``A`` a leaf of its own and ``q``, ``k``, ``v`` detached, so the gradient reaching ``A``
is the explicit path's and no other gradient changes.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = ["AttentionReader", "reader_for"]


def _in_graph(weights: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """``weights`` ``(B, heads, N, N)`` as a leaf that requires grad, and the zero-valued ``(B, N, heads * d)``
    term ``A v - (A v).detach()`` through which the gradient of the output reaches it (``values`` detached)."""
    weights = weights.detach().requires_grad_(True)
    out = weights @ values.detach()
    zero = (out - out.detach()).transpose(1, 2)
    return weights, zero.reshape(*zero.shape[:2], -1)


class AttentionReader:
    """Holds the ``(B, heads, N_q, N_k)`` softmax weights of one forward of ``module`` in ``weights``."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.weights: Tensor | None = None

    def attach(self) -> list[RemovableHandle]:
        raise NotImplementedError


class TimmAttentionReader(AttentionReader):
    """timm ``Attention``: queries and keys as its ``q_norm`` and ``k_norm`` return them ``(B, heads, N, d)``
    (identities unless the model normalises them), scaled by its own ``scale``. With gradients on, the
    values are read from its ``qkv`` output and the zero term enters at its ``norm`` (the attention output's
    first module)."""

    def attach(self) -> list[RemovableHandle]:
        attn, parts = self.module, {}

        def keep(name: str):
            def hook(_: nn.Module, __: tuple, output: Tensor) -> None:
                parts[name] = output.detach()
            return hook

        def values(_: nn.Module, __: tuple, output: Tensor) -> None:
            b, n, _ = output.shape
            parts["v"] = output.detach().reshape(b, n, 3, attn.num_heads, -1)[:, :, 2].transpose(1, 2)

        def into_output(_: nn.Module, args: tuple) -> tuple | None:
            q, k, v = parts.pop("q"), parts.pop("k"), parts.pop("v", None)
            self.weights = torch.softmax((q * attn.scale) @ k.transpose(-2, -1), dim=-1)
            if v is None or not torch.is_grad_enabled():
                return None
            self.weights, zero = _in_graph(self.weights, v)
            return (args[0] + zero, *args[1:])

        return [attn.q_norm.register_forward_hook(keep("q")), attn.k_norm.register_forward_hook(keep("k")),
                attn.qkv.register_forward_hook(values), attn.norm.register_forward_pre_hook(into_output)]


class MultiheadAttentionReader(AttentionReader):
    """torchvision's ``nn.MultiheadAttention`` (packed input projection): queries, keys (and values) projected
    by its ``in_proj_weight`` from the inputs of its call. With gradients on, the zero term goes through its
    ``out_proj`` weight into the output (the projection is linear: its bias is counted once)."""

    def attach(self) -> list[RemovableHandle]:
        zero: list[Tensor] = []

        def read(module: nn.MultiheadAttention, args: tuple, kwargs: dict[str, Any]) -> None:
            inputs = [args[i] if len(args) > i else kwargs[name] for i, name in enumerate(("query", "key", "value"))]
            if not module.batch_first:
                inputs = [t.transpose(0, 1) for t in inputs]
            dim, heads = module.embed_dim, module.num_heads
            weight, bias = module.in_proj_weight, module.in_proj_bias
            q, k, v = (F.linear(t, weight[i * dim:(i + 1) * dim], None if bias is None else bias[i * dim:(i + 1) * dim])
                       .reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2) for i, t in enumerate(inputs))
            self.weights = torch.softmax(q @ k.transpose(-2, -1) / (dim // heads) ** 0.5, dim=-1).detach()
            if torch.is_grad_enabled():
                self.weights, term = _in_graph(self.weights, v)
                zero.append(F.linear(term, module.out_proj.weight))

        def into_output(module: nn.MultiheadAttention, _: tuple, output: tuple) -> tuple | None:
            if not zero:
                return None
            term = zero.pop()
            return (output[0] + (term if module.batch_first else term.transpose(0, 1)), *output[1:])

        return [self.module.register_forward_pre_hook(read, with_kwargs=True),
                self.module.register_forward_hook(into_output)]


def reader_for(module: nn.Module) -> type[AttentionReader]:
    """The reader of ``module``'s type; ``TypeError`` for a type whose weights cannot be read."""
    from timm.layers import Attention as TimmAttention

    if type(module) is TimmAttention:
        return TimmAttentionReader
    if type(module) is nn.MultiheadAttention and module._qkv_same_embed_dim:
        return MultiheadAttentionReader
    raise TypeError(f"Cannot read attention weights from a {type(module).__module__}.{type(module).__name__}. "
                    "Readable: timm.layers.Attention, torch.nn.MultiheadAttention with one packed projection.")
