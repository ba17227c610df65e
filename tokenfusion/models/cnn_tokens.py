"""CNN tokens: one token per pixel of a trunk feature map."""
from __future__ import annotations

from torch import Tensor, nn

from .pos_embed import PositionEmbedding2d

__all__ = ["CNNTokens"]


class CNNTokens(nn.Module):
    """Project a ``(B, C, h, w)`` feature map to ``D`` channels and flatten it to ``(B, h*w, D)`` tokens,
    adding a 2-D position embedding defined on ``grid`` (:class:`PositionEmbedding2d` of kind ``pos_embed``)."""

    def __init__(self, in_channels: int, dim: int, grid: tuple[int, int], pos_embed: str = "learned") -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.pos_embed = PositionEmbedding2d(grid, dim, pos_embed)

    def forward(self, features: Tensor) -> tuple[Tensor, tuple[int, int]]:
        x = self.proj(features)
        grid = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2) + self.pos_embed(grid), grid
