"""Gradient-weighted attention relevance (Chefer, Gur and Wolf, ICCV 2021, "Generic Attention-model
Explainability for Interpreting Bi-Modal and Encoder-Decoder Transformers"), over our streams.

Each self-attention layer's weights ``A`` ``(B, heads, N, N)`` are weighted by the gradient of the
target's logit with respect to them, ``Ā = mean_heads (∇A ⊙ A)^+``; relevance starts as the identity
(every token is its own) and grows layer by layer, ``R ← R + Ā R`` (the residual path keeps what a
token had). The head's class-token row of ``R`` over one kind of token is the map. The layers are
those rollout follows (:func:`~tokenfusion.explain.attention.rollout_streams`): ``late``'s fusion
relevance is carried back through the stream that fed the kind, ``R_fusion[cls, stream] @ R_stream``.
Unlike rollout it depends on the class. It needs attention weights that are part of the traced
forward's graph, which a model declares (``ModelStructure.attention_gradients``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..models import ModelStructure, TokenFusionModel
from ._utils import ExplainError, class_index
from .attention import Rollout, _offset, rollout_streams
from .spec import Passes, Session, Targets

__all__ = ["Relevance", "relevance_matrix"]


def relevance_matrix(weights: Sequence[Tensor], gradients: Sequence[Tensor]) -> Tensor:
    """``(B, N, N)``: ``R = I``, then ``R ← R + mean_heads((∇A ⊙ A)^+) @ R`` for each layer's weights and
    their gradients ``(B, heads, N, N)``, first layer to last."""
    relevance: Tensor | None = None
    for a, grad in zip(weights, gradients):
        weighted = (grad * a).clamp(min=0).mean(1).float()
        if relevance is None:
            relevance = torch.eye(a.shape[-1], device=a.device).expand_as(weighted).clone()
        relevance = relevance + weighted @ relevance
    if relevance is None:
        raise ExplainError("No attention layers to propagate relevance through")
    return relevance


class Relevance(Rollout):
    """Chefer et al.'s relevance of one kind of input token for class ``target``: one traced forward
    with gradients and one backward beyond the session's forward."""

    name = "relevance"
    family = "gradient"
    gradients = True
    options: Mapping[str, Any] = {}

    def targets(self, structure: ModelStructure) -> Targets | None:
        return super().targets(structure) if structure.attention_gradients else None

    def passes(self, model: TokenFusionModel, channels: Mapping[str, int], layer: str | None, kind: str | None,
               options: Mapping[str, Any]) -> Passes:
        return Passes(1, 1)

    def grid(self, session: Session, layer: str | None, kind: str | None, target: int,
             options: Mapping[str, Any]) -> tuple[Tensor, str | None]:
        model = session.model
        model.eval()
        with torch.enable_grad():
            logits, trace = model(session.x, trace=True)
            feeder, final = rollout_streams(model.structure, trace, kind)
            if final is None:
                raise ExplainError(f"No self-attention carries {kind!r} tokens to the head")
            streams = [s for s in (feeder, final) if s is not None]
            weights = [w for s in streams for w in s.attention]
            gradients = torch.autograd.grad(logits[0, target], weights)
        matrices, start = [], 0
        for stream in streams:
            stop = start + len(stream.attention)
            matrices.append(relevance_matrix([w.detach() for w in stream.attention], gradients[start:stop])[0])
            start = stop
        row = matrices[-1][class_index(final.layout)]
        source = final.layout
        if feeder is not None:
            offset = _offset(final.layout, feeder.layout)
            row = row[offset : offset + feeder.layout.num_tokens] @ matrices[0]
            source = feeder.layout
        return source.to_grid(row.detach(), kind), final.layers[-1]
