"""The numbers of a model's anatomy that the Learn page walks through, read from one trace (its
rollout, grown layer by layer, is :meth:`~tokenfusion.explain.Explainer.rollout_steps`)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..models import TokenFusionModel, TokenLayout, Trace

__all__ = ["Anatomy", "anatomy", "sequence_table", "strongest_channels"]


@dataclass(frozen=True)
class Anatomy:
    """What one image becomes inside ``arch``: grids are ``(h, w)``; ``stage_grids`` the trunk's
    feature maps ``(channels, h, w)``; ``gates`` the ``layerwise`` gates ``tanh(g_l)``."""

    arch: str
    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    fusion_depth: int
    cnn_grid: tuple[int, int] | None
    patch_grid: tuple[int, int] | None
    stage_grids: list[tuple[int, int, int]]
    gates: list[float] | None


def _grid(trace: Trace, kind: str) -> tuple[int, int] | None:
    layouts = list(trace.layouts.values()) + [c.key_layout for c in trace.cross_attention.values()]
    grids = [lay.grid(kind) for lay in layouts if kind in lay.kinds]
    return grids[-1] if grids else None


def anatomy(model: TokenFusionModel, trace: Trace) -> Anatomy:
    """The :class:`Anatomy` of ``model`` from a traced forward of one image."""
    config = model.config
    gates = [c.gate for c in trace.cross_attention.values()] or None
    return Anatomy(
        arch=config.arch, img_size=config.img_size, patch_size=config.patch_size, embed_dim=config.embed_dim,
        depth=config.depth, num_heads=config.num_heads, fusion_depth=config.fusion_depth,
        cnn_grid=_grid(trace, "cnn") or (tuple(trace.cnn_features[-1].shape[-2:]) if trace.cnn_features else None),
        patch_grid=_grid(trace, "patch"),
        stage_grids=[tuple(f.shape[1:]) for f in trace.cnn_features],
        gates=gates,
    )


def _describe(layout: TokenLayout) -> dict[str, str | int]:
    row: dict[str, str | int] = {}
    for kind in ("cls", "cnn", "patch"):
        spans = [s for s in layout.spans if s.kind == kind]
        count = sum(s.length for s in spans)
        grids = [f"{s.grid[0]}×{s.grid[1]}" for s in spans if s.grid]
        row[kind] = f"{count} ({', '.join(grids)})" if grids else count
    row["total"] = layout.num_tokens
    return row


def sequence_table(trace: Trace) -> list[dict[str, str | int]]:
    """One row per token sequence the model runs (``blocks``, ``cnn_blocks``, ``fusion_blocks``,
    the ``layerwise`` cross-attention keys): its layers and how many tokens of each kind it holds."""
    rows = [{"sequence": name, "layers": len(s.layers), **_describe(s.layout)} for name, s in trace.streams.items()]
    if trace.cross_attention:
        first = next(iter(trace.cross_attention.values()))
        rows.append({"sequence": "cross_blocks (keys)", "layers": len(trace.cross_attention),
                     **_describe(first.key_layout)})
    return rows


def strongest_channels(features: Tensor, k: int = 6) -> list[tuple[int, Tensor]]:
    """The ``k`` channels of a feature map ``(C, h, w)`` with the largest mean activation on this
    image, as ``(channel index, (h, w) map)``, strongest first."""
    features = features.detach().float().cpu()
    top = features.mean((-2, -1)).topk(min(k, len(features))).indices.tolist()
    return [(c, features[c]) for c in top]
