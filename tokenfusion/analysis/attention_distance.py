"""Mean attention distance (Dosovitskiy et al. 2020, Fig. 7), per layer and head, query kind -> key kind.

For a query token, the attention-weighted mean of the pixel distance between its centre and the
centres of the keys of one kind (weights renormalised over those keys); averaged over the queries of
one kind and over the images. Class tokens have no position and are left out as queries and keys.
A token's centre is the centre of its grid cell, its grid spread evenly over the input
(``(i + 0.5) * H / h``): patch tokens tile the image, and a CNN token's receptive field is centred
on its cell for the trunks here (stride-aligned feature maps).
"""
from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from ..models import TokenLayout, Trace

__all__ = ["AttentionDistance", "mean_attention_distance", "token_centres"]

IMAGE_KINDS = ("cnn", "patch")


def token_centres(layout: TokenLayout, kind: str, image_size: tuple[int, int]) -> Tensor:
    """``(n, 2)`` pixel centres ``(y, x)`` of the ``kind`` tokens of ``layout`` on an input of ``image_size``
    ``(H, W)``, in sequence order (row-major over the kind's grid)."""
    h, w = layout.grid(kind)
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) * image_size[0] / h
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) * image_size[1] / w
    return torch.cartesian_prod(ys, xs)


@functools.lru_cache(maxsize=64)
def _distances(query: TokenLayout, q: str, key: TokenLayout, k: str, image_size: tuple[int, int]) -> Tensor:
    """``(n_q, n_k)`` pixel distances between the centres of ``q`` queries and ``k`` keys."""
    return torch.cdist(token_centres(query, q, image_size), token_centres(key, k, image_size))


def mean_attention_distance(
    weights: Tensor, query_layout: TokenLayout, key_layout: TokenLayout, image_size: tuple[int, int]
) -> dict[str, Tensor]:
    """``{"q->k": (B, heads)}`` (float64): for every image and head, the mean over ``q`` queries of the
    attention-weighted mean pixel distance to the ``k`` keys, for every pair of image-token kinds
    present. ``weights``: ``(B, heads, N_q, N_k)`` softmax attention, rows summing to 1."""
    out = {}
    image_size = (int(image_size[0]), int(image_size[1]))
    for q in (kind for kind in IMAGE_KINDS if kind in query_layout.kinds):
        qs = query_layout.grid_span(q)
        for k in (kind for kind in IMAGE_KINDS if kind in key_layout.kinds):
            ks = key_layout.grid_span(k)
            a = weights[:, :, qs.start:qs.stop, ks.start:ks.stop]  # (B, heads, n_q, n_k)
            distance = _distances(query_layout, q, key_layout, k, image_size).to(a)
            weighted = torch.einsum("bhqk,qk->bhq", a, distance).double()
            per_query = weighted / a.sum(-1).double().clamp_min(torch.finfo(torch.float64).tiny)
            out[f"{q}->{k}"] = per_query.mean(-1)
    return out


class AttentionDistance:
    """Sums :func:`mean_attention_distance` over batches: every self-attention layer of every stream
    of a trace, and every cross-attention layer; fixed memory whatever the number of images."""

    def __init__(self) -> None:
        self._sums: dict[tuple[str, str, str], Tensor] = {}  # (stream, layer, pair) -> (heads,)
        self._uniform: dict[tuple[str, str], float] = {}  # (stream, pair) -> pixels
        self.images = 0

    def update(self, trace: Trace, image_size: tuple[int, int]) -> None:
        batch = 0
        for name, stream in trace.streams.items():
            for layer, weights in zip(stream.layers, stream.attention):
                batch = len(weights)
                self._add(name, layer, mean_attention_distance(weights, stream.layout, stream.layout, image_size))
            self._reference(name, stream.layout, stream.layout, image_size)
        for layer, cross in trace.cross_attention.items():
            batch = len(cross.weights)
            self._add("cross_attention", layer,
                      mean_attention_distance(cross.weights, cross.query_layout, cross.key_layout, image_size))
            self._reference("cross_attention", cross.query_layout, cross.key_layout, image_size)
        self.images += batch

    def _add(self, stream: str, layer: str, pairs: dict[str, Tensor]) -> None:
        for pair, values in pairs.items():
            key = (stream, layer, pair)
            self._sums[key] = self._sums.get(key, 0) + values.sum(0).cpu()

    def _reference(self, stream: str, query: TokenLayout, key: TokenLayout, image_size: tuple[int, int]) -> None:
        size = (int(image_size[0]), int(image_size[1]))
        for q in (kind for kind in IMAGE_KINDS if kind in query.kinds):
            for k in (kind for kind in IMAGE_KINDS if kind in key.kinds):
                self._uniform[(stream, f"{q}->{k}")] = float(_distances(query, q, key, k, size).mean())

    def uniform(self) -> dict[str, dict[str, float]]:
        """``{stream: {"q->k": pixels}}``: the distance uniform attention over the keys would give (the mean
        distance between a query and a key centre), the reference for "local" and "global"."""
        out: dict[str, dict[str, float]] = {}
        for (stream, pair), value in self._uniform.items():
            out.setdefault(stream, {})[pair] = value
        return out

    def result(self) -> dict[str, Any]:
        """``{stream: {layer: {"q->k": [pixels per head]}}}`` averaged over the images seen."""
        out: dict[str, Any] = {}
        for (stream, layer, pair), total in self._sums.items():
            out.setdefault(stream, {}).setdefault(layer, {})[pair] = (total / max(self.images, 1)).tolist()
        return out
