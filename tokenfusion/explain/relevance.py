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

Tokens that enter the readout stream by cross-attention (``layerwise``'s CNN tokens, one key set per
token module) follow the paper's bi-modal rules: the stream's relevance on a key set starts at zero,
each cross-attention adds ``R̄ᵀ Ā`` (``R̄``: the stream's self-relevance with its identity taken out,
rows normalised, identity put back; the keys' own relevance is the identity, as they attend to
nothing), and each later self-attention block carries it on, ``R_keys ← R_keys + Ā R_keys``.
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
        """Rollout's ``(None, kind)`` for kinds in self-attention, and ``(token module, kind)`` for each
        token module whose tokens are keys of a cross-attention entry."""
        if not structure.attention_gradients:
            return None
        found = super().targets(structure)
        keys = tuple(dict.fromkeys((e.tokens, kind) for e in structure.cross_entries
                                   for kind, modules in structure.token_modules.items() if e.tokens in modules))
        if found is None and not keys:
            return None
        pairs = (found.pairs if found else ()) + keys
        return Targets(pairs, found.default if found else keys[-1])

    def passes(self, model: TokenFusionModel, channels: Mapping[str, int], layer: str | None, kind: str | None,
               options: Mapping[str, Any]) -> Passes:
        return Passes(1, 1)

    def grid(self, session: Session, layer: str | None, kind: str | None, target: int,
             options: Mapping[str, Any]) -> tuple[Tensor, str | None]:
        model = session.model
        model.eval()
        if layer is not None:
            return _over_cross_keys(model, session.x, layer, kind, target), layer
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


def _with_residual_normalised(relevance: Tensor) -> Tensor:
    """``R̄``: ``R - I`` with each row divided by its sum (rows summing to zero stay zero), ``+ I``."""
    eye = torch.eye(relevance.shape[-1], device=relevance.device)
    rest = relevance - eye
    sums = rest.sum(-1, keepdim=True)
    return torch.where(sums > 0, rest / sums.clamp(min=1e-12), torch.zeros_like(rest)) + eye


def _over_cross_keys(model: TokenFusionModel, x: Tensor, tokens: str, kind: str, target: int) -> Tensor:
    """The readout stream's class-token relevance ``(h, w)`` on the keys that token module ``tokens``
    makes for its cross-attention entries (the bi-modal rules of the module docstring)."""
    structure = model.structure
    readout = structure.readout
    entries = {e.before: e for e in structure.cross_entries if e.stream == readout.name}
    with torch.enable_grad():
        logits, trace = model(x, trace=True)
        stream = trace.streams[readout.name]
        crossing = [entries[layer].layer for layer in stream.layers if layer in entries]
        weights = [*stream.attention, *(trace.cross_attention[c].weights for c in crossing)]
        gradients = dict(zip([*stream.layers, *crossing], torch.autograd.grad(logits[0, target], weights)))
    weighted = {name: (gradients[name] * w.detach()).clamp(min=0).mean(1)[0].float()
                for name, w in zip([*stream.layers, *crossing], weights)}
    self_relevance = torch.eye(stream.layout.num_tokens, device=x.device)
    on_keys: Tensor | None = None
    key_layout = None
    for layer in stream.layers:
        entry = entries.get(layer)
        if entry is not None and entry.tokens == tokens:
            added = _with_residual_normalised(self_relevance).T @ weighted[entry.layer]
            on_keys = added if on_keys is None else on_keys + added
            key_layout = trace.cross_attention[entry.layer].key_layout
        attention = weighted[layer]
        if on_keys is not None:
            on_keys = on_keys + attention @ on_keys
        self_relevance = self_relevance + attention @ self_relevance
    if on_keys is None:
        raise ExplainError(f"No cross-attention of the readout stream has keys from {tokens!r}")
    return key_layout.to_grid(on_keys[class_index(stream.layout)].detach(), kind)
