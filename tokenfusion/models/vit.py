"""``vit``: the ViT-only baseline."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import TokenFusionModel, make_blocks, new_token, run_blocks
from .config import ModelConfig
from .layout import TokenLayout
from .patch_tokens import PatchTokens
from .structure import ModelStructure, Stream, block_targets
from .trace import Trace

__all__ = ["ViT"]


class ViT(TokenFusionModel):
    """Patch tokens and a class token through ``depth`` blocks; the head reads the class token.

    Its parameter names are shared by the patch stream of :class:`LayerwiseFusion`, so a
    ``layerwise`` state dict loads into a ``vit`` (``strict=False``) as its patch stream alone.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, config.embed_dim)
        dim = config.embed_dim
        self.patch_tokens = PatchTokens(config.img_size, config.patch_size, dim, config.pos_embed)
        self.cls_token = new_token(dim)
        self.blocks = make_blocks(config, config.depth)
        self.norm = nn.LayerNorm(dim)
        self._init_weights()

    @property
    def structure(self) -> ModelStructure:
        streams = (Stream("blocks", ("patch",), tuple(f"blocks.{i}" for i in range(len(self.blocks))), readout=True),)
        return ModelStructure(streams, {"patch": ("patch_tokens",)}, (), (), block_targets(streams))

    def forward_features(self, x: Tensor, trace: Trace | None = None) -> Tensor:
        tokens, grid = self.patch_tokens(x)
        layout = TokenLayout.build(("cls", 1), ("patch", grid))
        x = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        x = run_blocks(self.blocks, x, "blocks", layout, trace)
        return self.norm(x)[:, 0]
