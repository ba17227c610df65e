"""Parameter and FLOP counts (``torch.utils.flop_counter``)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .base import TokenFusionModel

__all__ = ["count_parameters", "count_flops"]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: TokenFusionModel, img_size: int | None = None) -> int:
    """Forward FLOPs for one image at ``img_size`` (default: the model's own input size).

    Counted on the traced path, whose explicit attention matmuls the counter sees on every device
    (the fused kernel is the same arithmetic).
    """
    size = img_size or model.config.img_size
    x = torch.zeros(1, 3, size, size, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(x, trace=True)
    model.train(was_training)
    return counter.get_total_flops()
