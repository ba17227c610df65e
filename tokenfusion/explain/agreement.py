"""How much the maps of several models agree on one image: rank correlation and top-pixel IoU."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .metrics import spearman

__all__ = ["top_fraction_iou", "agreement_matrices"]


def top_fraction_iou(a: Tensor, b: Tensor, fraction: float = 0.2) -> float:
    """Intersection over union of the ``fraction`` most salient pixels of two maps of one shape."""
    if a.shape != b.shape:
        raise ValueError(f"maps {tuple(a.shape)} and {tuple(b.shape)} must have the same shape")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    k = max(1, round(fraction * a.numel()))
    top_a = torch.zeros(a.numel(), dtype=torch.bool)
    top_b = torch.zeros(a.numel(), dtype=torch.bool)
    top_a[a.flatten().float().cpu().topk(k).indices] = True
    top_b[b.flatten().float().cpu().topk(k).indices] = True
    return float((top_a & top_b).sum() / (top_a | top_b).sum())


def _common_size(maps: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Every map resized (bilinear) to the smallest ``(H, W)`` among them."""
    height = min(m.shape[-2] for m in maps.values())
    width = min(m.shape[-1] for m in maps.values())
    resized = {}
    for name, m in maps.items():
        m = m.detach().float().cpu()
        if tuple(m.shape) != (height, width):
            m = F.interpolate(m[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
        resized[name] = m
    return resized


def agreement_matrices(maps: Mapping[str, Tensor], fraction: float = 0.2) -> dict[str, np.ndarray]:
    """Pairwise agreement of maps ``(H, W)`` named by model: ``"spearman"`` (rank correlation of
    all pixels) and ``"iou"`` (IoU of the top ``fraction`` of pixels), each ``(n, n)`` in model order."""
    same = _common_size(maps)
    names = list(same)
    n = len(names)
    rho, iou = np.eye(n), np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            rho[i, j] = rho[j, i] = spearman(same[names[i]], same[names[j]])
            iou[i, j] = iou[j, i] = top_fraction_iou(same[names[i]], same[names[j]], fraction)
    return {"spearman": rho, "iou": iou}
