"""What CKA compares: one vector per image for every layer and token kind a model declares.

A stream layer gives one feature per image-token kind its sequence holds: the mean over that kind's
tokens of the block's output ``(B, D)`` (the class token left out). Flattening the tokens, the
usual choice for ViTs, gives ``N * D`` features per image; the mean keeps the Gram matrices cheap
and makes models with different token grids comparable. A trunk stage gives the global average of
its feature map ``(B, C)``, a CNN feature.
"""
from __future__ import annotations

from torch import Tensor

from ..models import ModelStructure, Trace

__all__ = ["layer_features"]


def layer_features(structure: ModelStructure, trace: Trace) -> dict[str, tuple[str, Tensor]]:
    """``{name: (kind, (B, d))}`` in forward order: trunk stages (``"trunk.stage1"``, kind ``cnn``),
    then every stream layer and kind (``"blocks.2:patch"``)."""
    out = {stage: ("cnn", features.mean((2, 3))) for stage, features in zip(structure.trunk_stages, trace.cnn_features)}
    for stream in trace.streams.values():
        for layer, tokens in zip(stream.layers, stream.tokens):
            for kind in (k for k in ("cnn", "patch") if k in stream.layout.kinds):
                out[f"{layer}:{kind}"] = (kind, tokens[:, stream.layout.mask(kind).to(tokens.device)].mean(1))
    return out
