"""2-D position embeddings that follow the input size: learned, or fixed sine-cosine."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import POSITION_EMBEDDINGS

__all__ = ["PositionEmbedding2d", "sincos_2d"]


def sincos_2d(grid: tuple[int, int], dim: int, base: tuple[int, int] | None = None) -> Tensor:
    """Fixed 2-D sine-cosine embedding ``(1, h*w, D)`` of ``grid`` (half the channels for rows, half for
    columns, as in MAE). ``base``: the grid the coordinates are measured on (default ``grid``), so that a
    cell of another grid gets the embedding of the same place in the image. ``D`` must divide by 4."""
    if dim % 4:
        raise ValueError(f"A sine-cosine position embedding needs a width divisible by 4, not {dim}")
    (h, w), (h0, w0) = grid, base or grid
    rows = (torch.arange(h, dtype=torch.float64) + 0.5) * h0 / h - 0.5
    cols = (torch.arange(w, dtype=torch.float64) + 0.5) * w0 / w - 0.5
    omega = 1.0 / 10_000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))

    def embed(coords: Tensor) -> Tensor:  # (n,) -> (n, D/2)
        angles = coords[:, None] * omega[None]
        return torch.cat([angles.sin(), angles.cos()], 1)

    r, c = torch.meshgrid(rows, cols, indexing="ij")
    return torch.cat([embed(r.flatten()), embed(c.flatten())], 1)[None].float()


class PositionEmbedding2d(nn.Module):
    """One ``D``-vector per grid cell, defined on ``grid``: ``"learned"`` (a parameter, bicubically
    resampled when the grid changes) or ``"sincos"`` (fixed, :func:`sincos_2d`, a buffer saved with the
    weights and recomputed for other grids)."""

    def __init__(self, grid: tuple[int, int], dim: int, kind: str = "learned") -> None:
        super().__init__()
        if kind not in POSITION_EMBEDDINGS:
            raise ValueError(f"Unknown position embedding {kind!r}. Expected one of {list(POSITION_EMBEDDINGS)}")
        self.grid = grid
        self.kind = kind
        if kind == "learned":
            self.weight = nn.Parameter(torch.zeros(1, grid[0] * grid[1], dim))
            nn.init.trunc_normal_(self.weight, std=0.02)
        else:
            self.register_buffer("weight", sincos_2d(grid, dim))

    def forward(self, grid: tuple[int, int]) -> Tensor:
        """The embedding for ``grid``: ``(1, h*w, D)``."""
        if tuple(grid) == self.grid:
            return self.weight
        if self.kind == "sincos":
            return sincos_2d(tuple(grid), self.weight.shape[-1], self.grid).to(self.weight)
        h0, w0 = self.grid
        pos = self.weight.reshape(1, h0, w0, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=grid, mode="bicubic", align_corners=False)
        return pos.flatten(2).transpose(1, 2)
