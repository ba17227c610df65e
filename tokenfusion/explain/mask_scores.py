"""How a map sits on the object's ground-truth mask, in one record."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .metrics import mask_energy, pointing_game

__all__ = ["MaskScores", "mask_scores"]


@dataclass(frozen=True)
class MaskScores:
    """How a map sits on the object: ``pointing`` 1.0 when its maximum is on the mask (a blank map
    is a miss), ``energy`` the share of its mass on the mask, ``chance`` the share of the image the
    mask covers (the energy of a uniform map)."""

    pointing: float
    energy: float
    chance: float


def mask_scores(saliency: Tensor, mask: Tensor) -> MaskScores:
    """Pointing game and mask energy of a map ``(H, W)`` against a bool mask of the same shape."""
    saliency = saliency.detach().float().cpu()
    return MaskScores(pointing_game(saliency, mask), mask_energy(saliency, mask), float(mask.float().mean()))
