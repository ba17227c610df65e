"""Attention maps of the class token, attention rollout, and ``layerwise`` cross-attention maps.

Every map is read from one traced forward (``model(x, trace=True)``) and put on the grid of
its token kind with the layer's :class:`~tokenfusion.models.TokenLayout`; nothing here knows a
grid size. Attention is class-agnostic: the map does not depend on ``target``, which is only
checked and recorded in ``Explanation.target`` (the predicted class when None), so that deletion
and insertion curves score the class the caller has in mind.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor

from ..models import TokenFusionModel, TokenLayout, Trace
from ._utils import ExplainError, as_batch, class_index, resolve_target, traced
from .result import Explanation

__all__ = [
    "HEAD_FUSIONS", "fuse_heads", "rollout_matrix", "attention_map", "attention_rollout", "cross_attention_map",
    "attention_layers",
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


def attention_layers(trace: Trace, kind: str | None = None) -> list[str]:
    """Names of the self-attention layers in forward order, those holding ``kind`` tokens if given."""
    return [n for n, lay in trace.layouts.items() if kind is None or kind in lay.kinds]


def _check_kind(kind: str) -> None:
    if kind not in ("cnn", "patch"):
        raise ExplainError(f"Unknown token kind {kind!r}. Expected one of ['cnn', 'patch']")


def attention_map(
    model: TokenFusionModel, x: Tensor, layer: str | None = None, kind: str = "patch", head: int | str | None = None,
    *, target: int | None = None, trace: Trace | None = None, logits: Tensor | None = None,
) -> Explanation:
    """The class token's attention over ``kind`` tokens at one ``layer``, on that kind's grid.

    ``layer`` is a self-attention module name (``"blocks.3"``, ``"fusion_blocks.0"``; default: the
    last layer that holds ``kind`` tokens); ``head`` an index or a fusion (``"mean"`` when None).
    The query is the layout's first class token (in ``late`` fusion blocks, the head's own).
    ``grid`` holds the raw attention weights ``(h, w)`` (not renormalised over the kind).
    """
    start = time.perf_counter()
    _check_kind(kind)
    if trace is None or logits is None:
        logits, trace = traced(model, as_batch(x))
    layers = attention_layers(trace, kind)
    if not layers:
        raise ExplainError(f"{model.config.arch!r} has no self-attention over {kind!r} tokens"
                           + (" (use 'cross_attention' for layerwise CNN tokens)" if trace.cross_attention else ""))
    layer = layer or layers[-1]
    if layer not in layers:
        raise ExplainError(f"Layer {layer!r} has no {kind!r} tokens. Expected one of {layers}")
    layout = trace.layouts[layer]
    row = fuse_heads(trace.attention[layer], head)[0, class_index(layout)]  # (N,)
    grid = layout.to_grid(row, kind)
    return Explanation.from_grid(
        grid, tuple(x.shape[-2:]), method="attention", layer=layer, target=resolve_target(logits, target),
        seconds=time.perf_counter() - start, kind=kind,
    )


def _offset(outer: TokenLayout, inner: TokenLayout) -> int | None:
    """Where ``inner``'s spans sit consecutively inside ``outer`` (same kinds, lengths, grids)."""
    shape = [(s.kind, s.length, s.grid) for s in inner.spans]
    spans = outer.spans
    for i in range(len(spans) - len(shape) + 1):
        if [(s.kind, s.length, s.grid) for s in spans[i : i + len(shape)]] == shape:
            return spans[i].start
    return None


def attention_rollout(
    model: TokenFusionModel, x: Tensor, kind: str = "patch", head_fusion: str = "mean", discard_ratio: float = 0.0,
    *, target: int | None = None, trace: Trace | None = None, logits: Tensor | None = None,
) -> Explanation:
    """Attention rollout from the readout class token to the input ``kind`` tokens, on their grid.

    The rollout runs over the sequence the readout class token lives in (``"blocks"``, or the
    ``late`` fusion blocks). When ``kind`` tokens enter that sequence from another one — the
    ``late`` streams, whose outputs are concatenated into the fusion sequence — the class row is
    carried on through the rollout of that stream: ``r = R_fusion[cls, stream] @ R_stream``. So a
    ``late`` CNN map is "which CNN input tokens reach the head through the CNN stream and the
    fusion blocks". The stream's own class token is a learned constant and gets no map.
    ``layerwise`` CNN tokens enter by cross-attention, not self-attention: use
    :func:`cross_attention_map` for them. ``Explanation.layer`` is the last layer rolled out.
    """
    start = time.perf_counter()
    _check_kind(kind)
    if trace is None or logits is None:
        logits, trace = traced(model, as_batch(x))
    readout = model.structure.readout
    if readout is None:
        raise ExplainError(f"{model.config.arch!r} has no attention layers to roll out")
    final = trace.streams[readout.name]
    layout = final.layout
    rollout = rollout_matrix(final.attention, head_fusion, discard_ratio, layout.mask("cls"))
    relevance = rollout[0, class_index(layout)]
    source, layer = layout, final.layers[-1]
    for feeder in (s for s in model.structure.streams if s.feeds == readout.name):  # late's two streams
        inner = trace.streams[feeder.name]
        offset = _offset(layout, inner.layout)
        if kind in inner.layout.kinds and offset is not None:
            stream = rollout_matrix(inner.attention, head_fusion, discard_ratio, inner.layout.mask("cls"))
            relevance = relevance[offset : offset + inner.layout.num_tokens] @ stream[0]
            source = inner.layout
            break
    if kind not in source.kinds:
        hint = " (use 'cross_attention' for layerwise CNN tokens)" if trace.cross_attention else ""
        raise ExplainError(f"{model.config.arch!r} has no {kind!r} tokens under self-attention{hint}")
    grid = source.to_grid(relevance, kind)
    return Explanation.from_grid(
        grid, tuple(x.shape[-2:]), method="rollout", layer=layer, target=resolve_target(logits, target),
        seconds=time.perf_counter() - start, kind=kind,
    )


def cross_attention_map(
    model: TokenFusionModel, x: Tensor, layer: str | None = None, head: int | str | None = None, query: str = "cls",
    *, target: int | None = None, trace: Trace | None = None, logits: Tensor | None = None,
) -> Explanation:
    """``layerwise`` only: the cross-attention of patch-stream queries over CNN keys at ``layer``
    (``"cross_blocks.i"``, default the last), on the CNN grid of that layer's trunk stage.

    ``query="cls"`` takes the class token's row; ``"mean"`` averages the rows of every query
    (class and patch tokens). ``grid`` is the raw weights, before the gate ``tanh(g)`` scales
    the update (read the gate from :func:`tokenfusion.explain.fusion.fusion_weights`).
    """
    start = time.perf_counter()
    if trace is None or logits is None:
        logits, trace = traced(model, as_batch(x))
    layers = list(trace.cross_attention)
    if not layers:
        raise ExplainError(f"{model.config.arch!r} has no cross-attention; only 'layerwise' models do")
    layer = layer or layers[-1]
    if layer not in trace.cross_attention:
        raise ExplainError(f"Unknown cross-attention layer {layer!r}. Expected one of {layers}")
    cross = trace.cross_attention[layer]
    weights = fuse_heads(cross.weights, head)[0]  # (N_q, N_k)
    if query == "cls":
        row = weights[class_index(cross.query_layout)]
    elif query == "mean":
        row = weights.mean(0)
    else:
        raise ExplainError(f"Unknown query {query!r}. Expected one of ['cls', 'mean']")
    grid = cross.key_layout.to_grid(row, "cnn")
    return Explanation.from_grid(
        grid, tuple(x.shape[-2:]), method="cross_attention", layer=layer, target=resolve_target(logits, target),
        seconds=time.perf_counter() - start, kind="cnn",
    )
