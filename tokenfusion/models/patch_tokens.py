"""Patch tokens: one token per ``p x p`` image patch, as in ViT."""
from __future__ import annotations

from torch import Tensor, nn

from .pos_embed import PositionEmbedding2d

__all__ = ["PatchTokens"]


class PatchTokens(nn.Module):
    """A ``p x p`` stride-``p`` convolution to ``D`` channels, flattened to ``(B, h*w, D)``,
    plus a 2-D position embedding (:class:`PositionEmbedding2d` of kind ``pos_embed``)."""

    def __init__(self, img_size: int, patch_size: int, dim: int, pos_embed: str = "learned") -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        grid = (img_size // patch_size, img_size // patch_size)
        self.pos_embed = PositionEmbedding2d(grid, dim, pos_embed)

    def forward(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        h, w = images.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"Input size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        x = self.proj(images)
        grid = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2) + self.pos_embed(grid), grid
