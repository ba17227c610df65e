"""The order in which a forward first calls a model's parts (the randomisation test's order)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["called_in_order"]


def called_in_order(model: nn.Module, units: list[str], img_size: int) -> list[str]:
    """Those of ``units`` (submodule names of ``model``) that have parameters, in the order one forward
    of a blank ``(1, 3, img_size, img_size)`` image first calls them; hooks removed and the training
    mode restored afterwards."""
    units = [u for u in units if any(True for _ in model.get_submodule(u).parameters())]
    called: list[str] = []
    handles = [model.get_submodule(u).register_forward_pre_hook(lambda m, i, u=u: None if u in called else called.append(u))
               for u in units]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, img_size, img_size, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return called
