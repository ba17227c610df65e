"""``layerwise``: layer-by-layer token fusion through gated cross-attention."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import TokenFusionModel, make_blocks, new_token
from .blocks import CrossBlock
from .cnn_tokens import CNNTokens
from .config import ModelConfig
from .layout import TokenLayout
from .patch_tokens import PatchTokens
from .structure import CamTarget, CrossEntry, ModelStructure, Stream, block_targets, stage_targets
from .trace import CrossAttentionTrace, Trace
from .trunks import build_trunk

__all__ = ["LayerwiseFusion"]


class LayerwiseFusion(TokenFusionModel):
    """A patch-token stream of ``depth`` blocks (a ViT); before block ``l`` the stream
    cross-attends to CNN tokens of the trunk stage matched to that depth (the first half of the
    blocks reads the shallower stage, the second half the last), scaled by ``tanh(g_l)``.

    Every ``g_l`` starts at 0, so an untrained model computes exactly its patch stream; training
    learns per layer how much CNN to take. Module names match :class:`ViT`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, config.embed_dim)
        dim, depth = config.embed_dim, config.depth
        self.trunk = build_trunk(config.trunk, config.tiny_trunk_channels)
        grids = self.trunk.grids((config.img_size, config.img_size))
        self.cnn_tokens = nn.ModuleList(CNNTokens(c, dim, g, config.pos_embed) for c, g in zip(self.trunk.channels, grids))
        self.stage_of_block = [i * len(grids) // depth for i in range(depth)]
        self.patch_tokens = PatchTokens(config.img_size, config.patch_size, dim, config.pos_embed)
        self.cls_token = new_token(dim)
        self.cross_blocks = nn.ModuleList(CrossBlock(dim, config.num_heads) for _ in range(depth))
        self.blocks = make_blocks(config, depth)
        self.norm = nn.LayerNorm(dim)
        self._init_weights()

    @property
    def structure(self) -> ModelStructure:
        stages = tuple(f"trunk.{name}" for name in self.trunk.stage_names)
        layers = tuple(f"blocks.{i}" for i in range(len(self.blocks)))
        streams = (Stream("blocks", ("patch",), layers, readout=True),)
        entries = tuple(
            CrossEntry(f"cross_blocks.{i}", "blocks", layer, f"cnn_tokens.{s}", stages[s])
            for i, (layer, s) in enumerate(zip(layers, self.stage_of_block))
        )
        keys = tuple(CamTarget(f"{e.layer}.norm_kv", "cnn", "cross_keys", e.layer) for e in entries)
        tokens = {"cnn": tuple(f"cnn_tokens.{i}" for i in range(len(self.cnn_tokens))), "patch": ("patch_tokens",)}
        return ModelStructure(streams, tokens, stages, entries, stage_targets(stages) + block_targets(streams) + keys)

    def forward_features(self, x: Tensor, trace: Trace | None = None) -> Tensor:
        features = self.trunk(x)
        contexts = [tokens(f) for tokens, f in zip(self.cnn_tokens, features)]
        patch, grid = self.patch_tokens(x)
        if (keep := self.kind_masks(len(x), x.device)) is not None:
            contexts = [(tokens * keep["cnn"], g) for tokens, g in contexts]
            patch = patch * keep["patch"]
        layout = TokenLayout.build(("cls", 1), ("patch", grid))
        x = torch.cat([self.cls_token.expand(len(patch), -1, -1), patch], dim=1)
        if trace is not None:
            trace.cnn_features = features
        for i, (cross, block) in enumerate(zip(self.cross_blocks, self.blocks)):
            context, context_grid = contexts[self.stage_of_block[i]]
            if trace is None:
                x = block(cross(x, context))
                continue
            stream = x
            x, cross_weights = cross(x, context, need_weights=True)
            trace.cross_attention[f"cross_blocks.{i}"] = CrossAttentionTrace(
                weights=cross_weights,
                query_layout=layout,
                key_layout=TokenLayout.build(("cnn", context_grid)),
                gate=float(torch.tanh(cross.gate.detach())),
                update_ratio=(x - stream).flatten(1).norm(dim=1) / stream.flatten(1).norm(dim=1),
            )
            x, weights = block(x, need_weights=True)
            trace.record("blocks", f"blocks.{i}", layout, weights, x)
        return self.norm(x)[:, 0]
