"""``late``: late token fusion of two parallel streams."""
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

__all__ = ["LateFusion"]


class LateFusion(TokenFusionModel):
    """A CNN-token stream and a patch-token stream, each ``[cls; tokens]`` through ``depth`` blocks
    of its own, side by side; their outputs (type-embedded) are concatenated behind a fresh class
    token and pass ``fusion_depth`` blocks. The head reads the fresh class token.

    Fusion sequence: ``[cls; cnn_cls; CNN tokens; patch_cls; patch tokens]``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, config.embed_dim)
        dim, depth = config.embed_dim, config.depth
        total = depth + config.fusion_depth
        self.trunk = build_trunk(config.trunk, config.tiny_trunk_channels)
        grid = self.trunk.grids((config.img_size, config.img_size))[-1]
        self.cnn_tokens = CNNTokens(self.trunk.channels[-1], dim, grid, config.pos_embed)
        self.patch_tokens = PatchTokens(config.img_size, config.patch_size, dim, config.pos_embed)
        self.cnn_cls_token = new_token(dim)
        self.patch_cls_token = new_token(dim)
        self.cnn_blocks = make_blocks(config, depth, total=total)
        self.patch_blocks = make_blocks(config, depth, total=total)
        self.cnn_type_embed = new_token(dim)
        self.patch_type_embed = new_token(dim)
        self.cls_token = new_token(dim)
        self.fusion_blocks = make_blocks(config, config.fusion_depth, first=depth, total=total)
        self.norm = nn.LayerNorm(dim)
        self._init_weights()

    @property
    def structure(self) -> ModelStructure:
        stages = tuple(f"trunk.{name}" for name in self.trunk.stage_names)
        layers = lambda name: tuple(f"{name}.{i}" for i in range(len(getattr(self, name))))  # noqa: E731
        streams = (
            Stream("cnn_blocks", ("cnn",), layers("cnn_blocks"), feeds="fusion_blocks"),
            Stream("patch_blocks", ("patch",), layers("patch_blocks"), feeds="fusion_blocks"),
            Stream("fusion_blocks", ("cnn", "patch"), layers("fusion_blocks"), readout=True),
        )
        tokens = {"cnn": ("cnn_tokens",), "patch": ("patch_tokens",)}
        return ModelStructure(streams, tokens, stages, (), stage_targets(stages) + block_targets(streams))

    def forward_features(self, x: Tensor, trace: Trace | None = None) -> Tensor:
        b = len(x)
        features = self.trunk(x)
        cnn, cnn_grid = self.cnn_tokens(features[-1])
        patch, patch_grid = self.patch_tokens(x)
        if (keep := self.kind_masks(b, x.device)) is not None:
            cnn, patch = cnn * keep["cnn"], patch * keep["patch"]
        if trace is not None:
            trace.cnn_features = features
        cnn_layout = TokenLayout.build(("cls", 1), ("cnn", cnn_grid))
        patch_layout = TokenLayout.build(("cls", 1), ("patch", patch_grid))
        cnn = torch.cat([self.cnn_cls_token.expand(b, -1, -1), cnn], dim=1)
        cnn = run_blocks(self.cnn_blocks, cnn, "cnn_blocks", cnn_layout, trace)
        patch = torch.cat([self.patch_cls_token.expand(b, -1, -1), patch], dim=1)
        patch = run_blocks(self.patch_blocks, patch, "patch_blocks", patch_layout, trace)
        fused = torch.cat(
            [self.cls_token.expand(b, -1, -1), cnn + self.cnn_type_embed, patch + self.patch_type_embed], dim=1
        )
        fusion_layout = TokenLayout.build(("cls", 1)) + cnn_layout + patch_layout
        fused = run_blocks(self.fusion_blocks, fused, "fusion_blocks", fusion_layout, trace)
        return self.norm(fused)[:, 0]
