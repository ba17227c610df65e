"""The one result type every explanation method returns."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Explanation", "is_blank", "to_map"]


def is_blank(saliency: Tensor) -> bool:
    """True when the map ``(H, W)`` is constant, e.g. the all-zero map of a Grad-CAM whose weighted
    channels sum to a negative value everywhere: its maximum is everywhere, so it points nowhere."""
    return bool(saliency.numel() == 0 or saliency.max() == saliency.min())


def to_map(grid: Tensor, size: tuple[int, int]) -> Tensor:
    """A raw score grid ``(h, w)`` as a map ``(H, W)`` in [0, 1].

    Negative scores are clipped (as pytorch-grad-cam does before resizing), the grid is
    upsampled bilinearly (``align_corners=False``, so every cell covers its own block of
    pixels) and min-max normalised. A constant grid gives an all-zero map.
    """
    g = grid.detach().float().clamp(min=0)
    if tuple(g.shape) != tuple(size):
        g = F.interpolate(g[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    g = g - g.min()
    top = g.max()
    return g / top if top > 0 else torch.zeros_like(g)


@dataclass
class Explanation:
    """One explanation of one image.

    Attributes:
        map: ``(H, W)`` float in [0, 1] at image resolution (see :func:`to_map`).
        grid: ``(h, w)`` raw scores on the method's native grid (a token grid, a feature map, or
            the pixels), before clipping, upsampling and normalisation; may be signed.
        method: method name as :func:`tokenfusion.explain.explain` accepts it.
        layer: module name the method looked at (``"blocks.3"``, ``"trunk.stage2"``), or None.
        target: class index explained (the predicted class unless one was given).
        seconds: wall-clock time of the whole call, including the forward passes.
        kind: ``"cnn"`` or ``"patch"`` when the map lives on one kind of token (or on the CNN
            feature maps, ``"cnn"``), None for pixel attributions.
    """

    map: Tensor
    grid: Tensor
    method: str
    layer: str | None
    target: int
    seconds: float
    kind: str | None = None

    @property
    def blank(self) -> bool:
        """True when the map shows nothing (:func:`is_blank`): the layer does not move the score."""
        return is_blank(self.map)

    @classmethod
    def from_grid(
        cls, grid: Tensor, image_size: tuple[int, int], *, method: str, layer: str | None, target: int,
        seconds: float, kind: str | None = None,
    ) -> Explanation:
        """Build from a raw ``(h, w)`` grid, upsampling and normalising it with :func:`to_map`."""
        grid = grid.detach().float().cpu()
        return cls(to_map(grid, image_size), grid, method, layer, int(target), float(seconds), kind)
