"""The attention methods: the class token's attention at one layer, attention rollout, and the
``layerwise`` cross-attention, each read from the session's traced forward.

Every map is put on the grid of its token kind with the layer's
:class:`~tokenfusion.models.TokenLayout`; nothing here knows a grid size. Attention is
class-agnostic: the map does not depend on the target class, which the session only records.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..models import ModelStructure, StreamTrace, TokenFusionModel, TokenLayout, Trace
from ._utils import ExplainError, class_index
from .spec import Method, Passes, Session, Targets

__all__ = [
    "Attention", "CrossAttention", "Rollout", "fuse_heads", "rollout", "rollout_matrix", "rollout_path", "rollout_streams",
]

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(weights: Tensor, head: int | str | None = "mean") -> Tensor:
    """``(B, heads, N_q, N_k) -> (B, N_q, N_k)``: one head (an int), or ``"mean"``/``"max"``/``"min"``
    over heads (None means ``"mean"``)."""
    if isinstance(head, int):
        if not -weights.shape[1] <= head < weights.shape[1]:
            raise ExplainError(f"head {head} is out of range; this layer has {weights.shape[1]} heads")
        return weights[:, head]
    head = head or "mean"
    if head == "mean":
        return weights.mean(1)
    if head == "max":
        return weights.amax(1)
    if head == "min":
        return weights.amin(1)
    raise ExplainError(f"Unknown head fusion {head!r}. Expected a head index or one of {list(HEAD_FUSIONS)}")


def rollout_matrix(
    attentions: Sequence[Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0, keep: Tensor | None = None
) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020) over layers given first to last.

    Each layer's ``(B, heads, N, N)`` weights are fused over heads; then in every row the
    ``discard_ratio`` fraction of smallest entries is set to 0, never in the columns flagged by
    ``keep`` ``(N,)`` bool (the class tokens), per row so each query keeps its own strongest
    links; the identity is added for the residual path and the rows are renormalised to sum to 1.
    The product ``A_L ... A_1`` is returned: ``(B, N, N)``, row-stochastic, ``R[i, j]`` = how much
    of output token ``i`` flows from input token ``j``.
    """
    if not 0.0 <= discard_ratio < 1.0:
        raise ExplainError(f"discard_ratio must be in [0, 1); got {discard_ratio}")
    result: Tensor | None = None
    for weights in attentions:
        a = fuse_heads(weights.float(), head_fusion)
        n = a.shape[-1]
        if discard_ratio > 0:
            protected = torch.zeros(n, dtype=torch.bool, device=a.device) if keep is None else keep.to(a.device)
            k = int(discard_ratio * int((~protected).sum()))
            if k > 0:
                ranked = a.masked_fill(protected, float("inf"))
                a = a.scatter(-1, ranked.topk(k, dim=-1, largest=False).indices, 0.0)
        a = a + torch.eye(n, device=a.device, dtype=a.dtype)
        a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result
    if result is None:
        raise ExplainError("No attention layers to roll out")
    return result


def _offset(outer: TokenLayout, inner: TokenLayout) -> int | None:
    """Where ``inner``'s spans sit consecutively inside ``outer`` (same kinds, lengths, grids)."""
    shape = [(s.kind, s.length, s.grid) for s in inner.spans]
    spans = outer.spans
    for i in range(len(spans) - len(shape) + 1):
        if [(s.kind, s.length, s.grid) for s in spans[i : i + len(shape)]] == shape:
            return spans[i].start
    return None


def rollout_path(structure: ModelStructure, trace: Trace, kind: str) -> list[str]:
    """The self-attention layers that carry ``kind`` input tokens to the head's class token, in
    forward order: the readout stream's, after those of the stream feeding it the ``kind`` tokens
    (``late``: ``cnn_blocks.0..``, then ``fusion_blocks.0``). Empty when no self-attention over
    ``kind`` tokens reaches the head (``layerwise`` CNN tokens enter by cross-attention)."""
    feeder, final = rollout_streams(structure, trace, kind)
    if final is None:
        return []
    return [*(feeder.layers if feeder else ()), *final.layers]


def rollout_streams(
    structure: ModelStructure, trace: Trace, kind: str
) -> tuple[StreamTrace | None, StreamTrace | None]:
    """The stream traces a rollout of ``kind`` tokens crosses: ``(feeding stream, readout stream)``;
    the feeding stream is None where ``kind`` tokens are in the readout stream from its first block
    (``vit``, ``early``, ``layerwise``), the readout stream None where no self-attention carries
    them to the head. A method that follows tokens to the head the way rollout does reads these."""
    readout = structure.readout
    if readout is None:
        return None, None
    final = trace.streams[readout.name]
    for stream in (s for s in structure.streams if s.feeds == readout.name):  # late's two streams
        inner = trace.streams[stream.name]
        if kind in inner.layout.kinds and _offset(final.layout, inner.layout) is not None:
            return inner, final
    return None, (final if kind in final.layout.kinds else None)


def rollout(
    structure: ModelStructure, trace: Trace, kind: str, *, head_fusion: str = "mean", discard_ratio: float = 0.0,
    upto: int | None = None,
) -> tuple[Tensor, str]:
    """Attention rollout of ``kind`` input tokens, on their grid ``(h, w)``, over the first ``upto``
    layers of :func:`rollout_path` (all when None), read from the class token that carries them on
    at that point; with the last layer rolled out.

    Over the readout stream the row is the head's class token's. When ``kind`` tokens enter it from
    another stream (``late``, whose streams are concatenated into the fusion sequence), the rollout
    of that stream comes first, read from the stream's own class token while ``upto`` stays inside
    it, and once past it the head's row is carried back through it:
    ``r = R_fusion[cls, stream] @ R_stream``. The Learn page grows this one function layer by layer
    (``upto = 1, 2, ...``) and Explore shows ``upto=None``, so their last maps are the same.
    """
    feeder, final = rollout_streams(structure, trace, kind)
    path = rollout_path(structure, trace, kind)
    if not path:
        hint = " (its CNN tokens enter by cross-attention: use 'cross_attention')" if trace.cross_attention else ""
        raise ExplainError(f"No self-attention carries {kind!r} tokens to the head{hint}")
    upto = len(path) if upto is None else upto
    if not 1 <= upto <= len(path):
        raise ExplainError(f"upto must be in 1..{len(path)} for {kind!r} tokens; got {upto}")
    matrix = lambda s, n: rollout_matrix(s.attention[:n], head_fusion, discard_ratio, s.layout.mask("cls"))  # noqa: E731
    inside = len(feeder.layers) if feeder else 0
    if upto <= inside:  # still inside the feeding stream: its own class token's row
        relevance, source = matrix(feeder, upto)[0, class_index(feeder.layout)], feeder.layout
    else:
        relevance, source = matrix(final, upto - inside)[0, class_index(final.layout)], final.layout
        if feeder is not None:
            offset = _offset(final.layout, feeder.layout)
            relevance = relevance[offset : offset + feeder.layout.num_tokens] @ matrix(feeder, inside)[0]
            source = feeder.layout
    return source.to_grid(relevance, kind), path[upto - 1]


class Attention(Method):
    """The class token's attention over one kind of token at one layer (``head``: an index, or
    ``"mean"``/``"max"``/``"min"`` over heads; None is the mean). The query is the layout's first
    class token (in ``late`` fusion blocks, the head's own); the grid holds the raw weights, not
    renormalised over the kind."""

    name = "attention"
    family = "attention"
    options = {"head": None}

    def targets(self, structure: ModelStructure) -> Targets | None:
        pairs = tuple((layer, kind) for s in structure.streams for layer in s.layers for kind in s.kinds)
        if not pairs:
            return None
        kinds = [k for _, k in pairs]
        default_kind = "patch" if "patch" in kinds else kinds[0]
        return Targets(pairs, [p for p in pairs if p[1] == default_kind][-1])

    def passes(self, model: TokenFusionModel, channels: Mapping[str, int], layer: str | None, kind: str | None,
               options: Mapping[str, Any]) -> Passes:
        return Passes(0, 0)

    def grid(self, session: Session, layer: str | None, kind: str | None, target: int,
             options: Mapping[str, Any]) -> tuple[Tensor, str | None]:
        layout = session.trace.layouts[layer]
        row = fuse_heads(session.trace.attention[layer], options["head"])[0, class_index(layout)]  # (N,)
        return layout.to_grid(row, kind), layer


class Rollout(Attention):
    """Attention rollout from the head's class token to the input tokens of one kind (:func:`rollout`);
    ``head_fusion`` over heads, ``discard_ratio`` of the weakest links of every row dropped."""

    name = "rollout"
    options = {"head_fusion": "mean", "discard_ratio": 0.0}

    def targets(self, structure: ModelStructure) -> Targets | None:
        found = super().targets(structure)
        if found is None:
            return None
        kinds = tuple(dict.fromkeys(k for _, k in found.pairs))
        return Targets(tuple((None, k) for k in kinds), (None, found.default[1]))

    def grid(self, session: Session, layer: str | None, kind: str | None, target: int,
             options: Mapping[str, Any]) -> tuple[Tensor, str | None]:
        return rollout(session.model.structure, session.trace, kind, **options)


class CrossAttention(Attention):
    """``layerwise`` only: the cross-attention of patch-stream queries over the CNN keys of one
    cross block, on the CNN grid of its trunk stage. ``query="cls"`` takes the class token's row,
    ``"mean"`` the mean of every query's; the grid is the raw weights, before the gate ``tanh(g)``."""

    name = "cross_attention"
    options = {"head": None, "query": "cls"}

    def targets(self, structure: ModelStructure) -> Targets | None:
        pairs = tuple((e.layer, kind) for e in structure.cross_entries
                      for kind, modules in structure.token_modules.items() if e.tokens in modules)
        return Targets(pairs, pairs[-1]) if pairs else None

    def grid(self, session: Session, layer: str | None, kind: str | None, target: int,
             options: Mapping[str, Any]) -> tuple[Tensor, str | None]:
        cross = session.trace.cross_attention[layer]
        weights = fuse_heads(cross.weights, options["head"])[0]  # (N_q, N_k)
        query = options["query"]
        if query not in ("cls", "mean"):
            raise ExplainError(f"Unknown query {query!r}. Expected one of ['cls', 'mean']")
        row = weights[class_index(cross.query_layout)] if query == "cls" else weights.mean(0)
        return cross.key_layout.to_grid(row, kind), layer
