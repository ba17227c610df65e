"""Learned 2-D position embeddings that follow the input size."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PositionEmbedding2d"]


class PositionEmbedding2d(nn.Module):
    """One learned ``D``-vector per grid cell, bicubically resampled when the grid changes."""

    def __init__(self, grid: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.weight = nn.Parameter(torch.zeros(1, grid[0] * grid[1], dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, grid: tuple[int, int]) -> Tensor:
        """The embedding for ``grid``: ``(1, h*w, D)``."""
        if tuple(grid) == self.grid:
            return self.weight
        h0, w0 = self.grid
        pos = self.weight.reshape(1, h0, w0, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=grid, mode="bicubic", align_corners=False)
        return pos.flatten(2).transpose(1, 2)
