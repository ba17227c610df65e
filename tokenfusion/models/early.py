"""``early``: early token fusion, one sequence of class, CNN and patch tokens."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import TokenFusionModel, make_blocks, new_token, run_blocks
from .cnn_tokens import CNNTokens
from .config import ModelConfig
from .layout import TokenLayout
from .patch_tokens import PatchTokens
from .structure import ModelStructure, Stream, block_targets, stage_targets
from .trace import Trace
from .trunks import build_trunk

__all__ = ["EarlyFusion"]


class EarlyFusion(TokenFusionModel):
    """``[cls; CNN tokens + e_cnn; patch tokens + e_patch]`` through ``depth`` blocks from the first.

    CNN tokens come from the last trunk stage; ``e_cnn``/``e_patch`` are learned token-type
    embeddings that let attention tell the two kinds apart.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, config.embed_dim)
        dim = config.embed_dim
        self.trunk = build_trunk(config.trunk, config.tiny_trunk_channels)
        grid = self.trunk.grids((config.img_size, config.img_size))[-1]
        self.cnn_tokens = CNNTokens(self.trunk.channels[-1], dim, grid, config.pos_embed)
        self.patch_tokens = PatchTokens(config.img_size, config.patch_size, dim, config.pos_embed)
        self.cnn_type_embed = new_token(dim)
        self.patch_type_embed = new_token(dim)
        self.cls_token = new_token(dim)
        self.blocks = make_blocks(config, config.depth)
        self.norm = nn.LayerNorm(dim)
        self._init_weights()

    @property
    def structure(self) -> ModelStructure:
        stages = tuple(f"trunk.{name}" for name in self.trunk.stage_names)
        layers = tuple(f"blocks.{i}" for i in range(len(self.blocks)))
        streams = (Stream("blocks", ("cnn", "patch"), layers, readout=True),)
        tokens = {"cnn": ("cnn_tokens",), "patch": ("patch_tokens",)}
        return ModelStructure(streams, tokens, stages, (), stage_targets(stages) + block_targets(streams))

    def forward_features(self, x: Tensor, trace: Trace | None = None) -> Tensor:
        features = self.trunk(x)
        cnn, cnn_grid = self.cnn_tokens(features[-1])
        patch, patch_grid = self.patch_tokens(x)
        if (keep := self.kind_masks(len(x), x.device)) is not None:
            cnn, patch = cnn * keep["cnn"], patch * keep["patch"]
        layout = TokenLayout.build(("cls", 1), ("cnn", cnn_grid), ("patch", patch_grid))
        cls = self.cls_token.expand(len(x), -1, -1)
        x = torch.cat([cls, cnn + self.cnn_type_embed, patch + self.patch_type_embed], dim=1)
        if trace is not None:
            trace.cnn_features = features
        x = run_blocks(self.blocks, x, "blocks", layout, trace)
        return self.norm(x)[:, 0]
