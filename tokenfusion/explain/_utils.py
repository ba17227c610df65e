"""Small helpers shared by the explanation methods (not part of the public API)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..models import TokenFusionModel, TokenLayout, Trace

__all__ = ["as_batch", "traced", "resolve_target", "class_index", "ExplainError"]


class ExplainError(ValueError):
    """A request that cannot be explained; the message lists what is allowed."""


def as_batch(x: Tensor) -> Tensor:
    """One normalised image ``(3, H, W)`` or ``(1, 3, H, W)`` as ``(1, 3, H, W)``."""
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ExplainError(f"Expected one image (3, H, W) or (1, 3, H, W); got shape {tuple(x.shape)}")
    return x


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def traced(model: TokenFusionModel, x: Tensor) -> tuple[Tensor, Trace]:
    """One traced forward in eval mode: ``(logits (B, classes), trace)``."""
    model.eval()
    return model(x.to(device_of(model)), trace=True)


def resolve_target(logits: Tensor, target: int | None) -> int:
    """``target`` checked against ``logits (1, classes)``, or the predicted class when None."""
    num_classes = logits.shape[-1]
    if target is None:
        return int(logits[0].argmax())
    if not 0 <= int(target) < num_classes:
        raise ExplainError(
            f"target {target} is out of range; this model has {num_classes} classes (0..{num_classes - 1})"
        )
    return int(target)


def class_index(layout: TokenLayout) -> int:
    """Sequence position of the class token that the layout's readout uses (its first class token)."""
    for span in layout.spans:
        if span.kind == "cls":
            return span.start
    raise ExplainError(f"This layout has no class token; it holds {list(layout.kinds)}")
