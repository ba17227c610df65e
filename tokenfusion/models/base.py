"""The base class every architecture derives from: one forward, traced on request."""
from __future__ import annotations

from typing import overload, Literal

import torch
from torch import Tensor, nn

from .blocks import Block
from .config import ModelConfig
from .layout import TokenLayout
from .order import called_in_order
from .structure import ModelStructure
from .trace import Trace
from .trunks import Trunk

__all__ = ["TokenFusionModel"]


class TokenFusionModel(nn.Module):
    """``model(x)`` returns logits ``(B, num_classes)``; ``model(x, trace=True)`` returns
    ``(logits, Trace)`` from the same computation with attention weights made explicit.

    Subclasses implement :meth:`forward_features`, which maps images ``(B, 3, H, W)`` to the
    pooled feature ``(B, D)`` that :meth:`forward_head` classifies, filling ``trace`` when given.
    """

    def __init__(self, config: ModelConfig, num_features: int) -> None:
        super().__init__()
        self.config = config
        self.num_features = num_features
        self.head_drop = nn.Dropout(config.drop_rate)
        self.head = nn.Linear(num_features, config.num_classes)

    @property
    def structure(self) -> ModelStructure:
        """What this model has: its streams, token modules, trunk stages, CAM targets."""
        raise NotImplementedError

    def forward_features(self, x: Tensor, trace: Trace | None = None) -> Tensor:
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(self.head_drop(features))

    @overload
    def forward(self, x: Tensor, trace: Literal[False] = False) -> Tensor: ...
    @overload
    def forward(self, x: Tensor, trace: Literal[True]) -> tuple[Tensor, Trace]: ...

    def forward(self, x: Tensor, trace: bool = False) -> Tensor | tuple[Tensor, Trace]:
        record = Trace() if trace else None
        logits = self.forward_head(self.forward_features(x, record))
        return (logits, record) if record is not None else logits

    def parts_in_forward_order(self) -> list[str]:
        """Names of the model's parts in the order a forward first calls them: top-level modules,
        each element of a block list and each child of the trunk, those with parameters only.

        Read from one forward of a blank image of ``img_size`` (hooks removed afterwards)."""
        units: list[str] = []
        for name, child in self.named_children():
            if isinstance(child, (nn.ModuleList, Trunk)):
                units += [f"{name}.{sub}" for sub, _ in child.named_children()]
            else:
                units.append(name)
        return called_in_order(self, units, self.config.img_size)

    def kind_masks(self, batch: int, device: torch.device) -> dict[str, Tensor] | None:
        """Training with ``config.kind_drop_rate = p``: per-image ``(B, 1, 1)`` masks by token kind, 0 for
        the kind an image loses, by which the model multiplies that kind's tokens; with
        ``config.kind_drop_kinds`` ``"both"`` CNN tokens with probability p/2 and patch tokens with p/2
        (never both), with ``"cnn"`` or ``"patch"`` that kind with probability p. None in evaluation or
        when ``p = 0``."""
        p = self.config.kind_drop_rate
        if not (self.training and p > 0):
            return None
        u = torch.rand(batch, 1, 1, device=device)
        cnn_share = {"both": p / 2, "cnn": p, "patch": 0.0}[self.config.kind_drop_kinds]
        return {"cnn": (u >= cnn_share).float(), "patch": ((u < cnn_share) | (u >= p)).float()}

    def no_weight_decay(self) -> set[str]:
        """Parameter names that the optimiser should not decay (embeddings, class tokens, gates)."""
        keys = ("pos_embed", "cls_token", "type_embed", "gate")
        return {n for n, _ in self.named_parameters() if any(k in n for k in keys)}

    def _init_weights(self) -> None:
        """Every linear layer by ``config.weight_init`` (biases zero), LayerNorms to identity, class tokens
        and type embeddings truncated normal of std 0.02."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                if self.config.weight_init == "xavier":
                    nn.init.xavier_uniform_(m.weight)
                else:
                    nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for p in self.parameters(recurse=False):
            nn.init.trunc_normal_(p, std=0.02)  # class tokens, type embeddings


def make_blocks(config: ModelConfig, depth: int, first: int = 0, total: int | None = None) -> nn.ModuleList:
    """``depth`` blocks whose drop-path rates continue a linear ramp over ``total`` blocks."""
    total = total or depth
    rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # plain numbers: meta-safe
    return nn.ModuleList(
        Block(config.embed_dim, config.num_heads, config.mlp_ratio, config.drop_rate, rates[first + i])
        for i in range(depth)
    )


def run_blocks(blocks: nn.ModuleList, x: Tensor, stream: str, layout: TokenLayout, trace: Trace | None) -> Tensor:
    """Run ``blocks`` (the module named ``stream``) over ``x`` ``(B, N, D)``, recording each block
    ``stream.i`` into ``trace`` when given."""
    for i, block in enumerate(blocks):
        if trace is None:
            x = block(x)
        else:
            x, weights = block(x, need_weights=True)
            trace.record(stream, f"{stream}.{i}", layout, weights, x)
    return x


def new_token(dim: int) -> nn.Parameter:
    """A learned ``(1, 1, D)`` token (class token, type embedding)."""
    return nn.Parameter(torch.zeros(1, 1, dim))
