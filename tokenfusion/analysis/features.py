"""What CKA compares: for every layer and token kind a model declares, its tokens on their grid.

A stream layer gives one feature per image-token kind its sequence holds: the block's output for
that kind's tokens ``(B, N, D)`` (the class token left out) on the kind's grid. A trunk stage gives its
feature map ``(B, C, h, w)`` as ``h * w`` tokens of ``C`` channels, a CNN feature.
:class:`~tokenfusion.analysis.cka.MinibatchCKA` compares two features token by token where their
grids match, and on each image's mean token where they differ (:func:`layer_features`: the means).
"""
from __future__ import annotations

from torch import Tensor

from ..models import ModelStructure, Trace

__all__ = ["layer_features", "layer_tokens"]


def layer_tokens(structure: ModelStructure, trace: Trace) -> dict[str, tuple[str, Tensor, tuple[int, int]]]:
    """``{name: (kind, tokens (B, N, d), grid (h, w))}`` in forward order: trunk stages
    (``"trunk.stage1"``, kind ``cnn``), then every stream layer and kind (``"blocks.2:patch"``);
    tokens row-major over the grid."""
    out = {stage: ("cnn", features.flatten(2).transpose(1, 2), (features.shape[2], features.shape[3]))
           for stage, features in zip(structure.trunk_stages, trace.cnn_features)}
    for stream in trace.streams.values():
        for layer, tokens in zip(stream.layers, stream.tokens):
            for kind in (k for k in ("cnn", "patch") if k in stream.layout.kinds):
                span = stream.layout.grid_span(kind)
                out[f"{layer}:{kind}"] = (kind, tokens[:, span.start:span.stop], span.grid)
    return out


def layer_features(structure: ModelStructure, trace: Trace) -> dict[str, tuple[str, Tensor]]:
    """``{name: (kind, (B, d))}``: the mean over each feature's tokens of :func:`layer_tokens` (trunk
    stages: the global average of the feature map), one vector per image."""
    return {name: (kind, tokens.mean(1)) for name, (kind, tokens, _) in layer_tokens(structure, trace).items()}
