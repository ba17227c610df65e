"""How much memory a model needs, from its shapes alone: built on PyTorch's ``meta`` device, where
nothing is allocated, so that :func:`~tokenfusion.checkpoint.load_checkpoint` can refuse a model
too large for the machine before it exists."""
from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from .models import AdaptedConfig, ModelConfig, build
from .models.blocks import Attention

__all__ = ["estimate_memory", "estimated", "on_meta"]


def estimate_memory(model: nn.Module, attention: bool = True) -> dict[str, int]:
    """Parameters of ``model`` and the bytes it needs, from shapes alone (``model`` may live on the
    ``meta`` device): ``weights_bytes`` for its parameters and buffers, and, when ``attention``,
    ``attention_bytes`` for the attention maps ``(B=1, heads, N_q, N_k)`` that one traced forward of an
    ``img_size`` image keeps (found by running a forward on the model's own device; on ``meta`` that
    takes a fraction of a second, nothing is computed)."""
    size = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_bytes": sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]),
        "attention_bytes": 0,
    }
    if not attention:
        return size
    maps: list[int] = []

    def count(module: Attention, args: tuple, kwargs: dict, output: Any) -> None:
        queries = args[0]
        context = args[1] if len(args) > 1 and args[1] is not None else kwargs.get("context")
        keys = (context if context is not None else queries).shape[1]
        maps.append(queries.shape[0] * module.num_heads * queries.shape[1] * keys * queries.element_size())

    handles = [m.register_forward_hook(count, with_kwargs=True) for m in model.modules() if isinstance(m, Attention)]
    device = next(model.parameters()).device
    image = model.config.img_size
    try:
        with torch.no_grad():
            model.eval()(torch.empty(1, 3, image, image, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return {**size, "attention_bytes": sum(maps)}


def on_meta(config: ModelConfig | AdaptedConfig) -> nn.Module:
    """The model ``config`` describes, on the ``meta`` device: shapes only, nothing allocated."""
    with torch.device("meta"):
        return build(config)


@functools.lru_cache(maxsize=32)
def estimated(config: ModelConfig | AdaptedConfig) -> dict[str, int]:
    """:func:`estimate_memory` of ``config``'s model, once per config (its meta forward is the slow part)."""
    return estimate_memory(on_meta(config))
