"""Mean attention distance (Dosovitskiy et al. 2020, Fig. 7), per layer and head, query kind -> key kind.

For a query token, the attention-weighted mean of the pixel distance between its centre and the
centres of the keys of one kind (weights renormalised over those keys); averaged over the queries of
one kind and over the images. Class tokens have no position and are left out as queries and keys.

A token's centre is the centre of what it sees, in input pixels (pixel ``k`` spans ``[k, k + 1)``):
for a patch token its patch's centre; for a CNN token the centre of its receptive field, measured
from the model (:func:`tokenfusion.models.geometry.token_geometry`: backpropagating tokens to the
input), which for padded stride-``s`` convolutions is not ``(i + 0.5) * s`` (``LocalTrunk``'s last
stage: ``8i + 2.5``). :class:`AttentionDistance` given the model reads every kind's centres so; without a
model, or in :func:`mean_attention_distance` without geometries, a grid is spread evenly over the
input, ``(i + 0.5) * H / h``, which is exact for patch tokens only.

The reference for "local" is the distance uniform attention would give: the mean distance between
every query and every key position, for each pair of query grid and key grid actually attended (a
``layerwise`` model's cross-attention reads a 16x16 grid of CNN keys in its first layers and an 8x8
one later: one reference each).
"""
from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from ..models import TokenFusionModel, TokenLayout, Trace
from ..models.geometry import TokenGeometry, token_geometry

__all__ = ["AttentionDistance", "mean_attention_distance", "token_centres"]

IMAGE_KINDS = ("cnn", "patch")
Geometries = dict[str, TokenGeometry]  # token kind -> where that kind's tokens sit


def token_centres(layout: TokenLayout, kind: str, image_size: tuple[int, int] | None = None,
                  geometry: TokenGeometry | None = None) -> Tensor:
    """``(n, 2)`` pixel centres ``(y, x)`` of the ``kind`` tokens of ``layout``, in sequence order
    (row-major over the kind's grid): from ``geometry`` (what the tokens' module sees) when given,
    else the grid spread evenly over an input of ``image_size`` ``(H, W)`` (patch tokens)."""
    grid = layout.grid(kind)
    if geometry is not None:
        return geometry.centres(grid)
    if image_size is None:
        raise ValueError("token_centres needs the tokens' geometry or the image size")
    h, w = grid
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) * image_size[0] / h
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) * image_size[1] / w
    return torch.cartesian_prod(ys, xs)


def _size(image_size: tuple[int, int] | None) -> tuple[int, int] | None:
    return None if image_size is None else (int(image_size[0]), int(image_size[1]))


@functools.lru_cache(maxsize=256)
def _distances(query_grid: tuple[int, int], query_geometry: TokenGeometry | None, key_grid: tuple[int, int],
               key_geometry: TokenGeometry | None, image_size: tuple[int, int] | None) -> Tensor:
    """``(n_q, n_k)`` pixel distances between the centres of a query grid and a key grid."""
    queries = token_centres(TokenLayout.build(("patch", query_grid)), "patch", image_size, query_geometry)
    keys = token_centres(TokenLayout.build(("patch", key_grid)), "patch", image_size, key_geometry)
    return torch.cdist(queries, keys)


def _pairs(query_layout: TokenLayout, key_layout: TokenLayout):
    for q in (kind for kind in IMAGE_KINDS if kind in query_layout.kinds):
        for k in (kind for kind in IMAGE_KINDS if kind in key_layout.kinds):
            yield q, k


def _pair_distances(query_layout: TokenLayout, q: str, key_layout: TokenLayout, k: str,
                    image_size: tuple[int, int] | None, query_geometry: Geometries | None,
                    key_geometry: Geometries | None) -> Tensor:
    return _distances(query_layout.grid(q), (query_geometry or {}).get(q), key_layout.grid(k),
                      (key_geometry or {}).get(k), _size(image_size))


def mean_attention_distance(
    weights: Tensor, query_layout: TokenLayout, key_layout: TokenLayout, image_size: tuple[int, int] | None = None,
    *, query_geometry: Geometries | None = None, key_geometry: Geometries | None = None,
) -> dict[str, Tensor]:
    """``{"q->k": (B, heads)}`` (float64): for every image and head, the mean over ``q`` queries of the
    attention-weighted mean pixel distance to the ``k`` keys, for every pair of image-token kinds
    present. ``weights``: ``(B, heads, N_q, N_k)`` softmax attention, rows summing to 1.
    ``query_geometry`` / ``key_geometry``: where each kind's tokens sit (kind -> :class:`TokenGeometry`);
    a kind without one has its grid spread evenly over an input of ``image_size``."""
    out = {}
    for q, k in _pairs(query_layout, key_layout):
        qs, ks = query_layout.grid_span(q), key_layout.grid_span(k)
        a = weights[:, :, qs.start:qs.stop, ks.start:ks.stop]  # (B, heads, n_q, n_k)
        distance = _pair_distances(query_layout, q, key_layout, k, image_size, query_geometry, key_geometry).to(a)
        weighted = torch.einsum("bhqk,qk->bhq", a, distance).double()
        per_query = weighted / a.sum(-1).double().clamp_min(torch.finfo(torch.float64).tiny)
        out[f"{q}->{k}"] = per_query.mean(-1)
    return out


class AttentionDistance:
    """Sums :func:`mean_attention_distance` over batches: every self-attention layer of every stream
    of a trace, and every cross-attention layer; fixed memory whatever the number of images.

    ``model``: the model the traces come from; its token modules (``model.structure``) say where
    every kind of token sits (a stream's tokens of a kind come from the model's one module of that
    kind, a cross-attention's keys from the module its entry names), measured once. Without it,
    every grid is spread evenly over the input (exact for patch tokens only).
    """

    def __init__(self, model: TokenFusionModel | None = None) -> None:
        self.model = model
        self._sums: dict[tuple[str, str, str], Tensor] = {}  # (stream, layer, pair) -> (heads,)
        self._uniform: dict[tuple[str, str, str], float] = {}  # (stream, layer, pair) -> pixels
        self.images = 0

    def _geometry(self, kinds: tuple[str, ...], modules: dict[str, str] | None = None) -> Geometries | None:
        """Where the tokens of ``kinds`` sit: from ``modules`` (kind -> token module) when given, else
        from the model's one token module of each kind."""
        if self.model is None:
            return None
        structure = self.model.structure
        modules = modules or {}
        return {kind: token_geometry(self.model, modules.get(kind) or structure.token_module(kind))
                for kind in kinds if kind in IMAGE_KINDS}

    def _cross_keys(self, layer: str) -> dict[str, str] | None:
        if self.model is None:
            return None
        entry = next((e for e in self.model.structure.cross_entries if e.layer == layer), None)
        if entry is None:
            raise KeyError(f"The model declares no cross-attention entry {layer!r}")
        return {"cnn": entry.tokens}

    def update(self, trace: Trace, image_size: tuple[int, int]) -> None:
        batch = 0
        for name, stream in trace.streams.items():
            geometry = self._geometry(stream.layout.kinds)
            for layer, weights in zip(stream.layers, stream.attention):
                batch = len(weights)
                self._add(name, layer, stream.layout, stream.layout, weights, image_size, geometry, geometry)
        for layer, cross in trace.cross_attention.items():
            batch = len(cross.weights)
            self._add("cross_attention", layer, cross.query_layout, cross.key_layout, cross.weights, image_size,
                      self._geometry(cross.query_layout.kinds),
                      self._geometry(cross.key_layout.kinds, self._cross_keys(layer)))
        self.images += batch

    def _add(self, stream: str, layer: str, query: TokenLayout, key: TokenLayout, weights: Tensor,
             image_size: tuple[int, int], query_geometry: Geometries | None, key_geometry: Geometries | None) -> None:
        pairs = mean_attention_distance(weights, query, key, image_size, query_geometry=query_geometry,
                                        key_geometry=key_geometry)
        for pair, values in pairs.items():
            entry = (stream, layer, pair)
            self._sums[entry] = self._sums.get(entry, 0) + values.sum(0).cpu()
        for q, k in _pairs(query, key):  # uniform attention over these keys: the mean of every distance
            distances = _pair_distances(query, q, key, k, image_size, query_geometry, key_geometry)
            self._uniform[(stream, layer, f"{q}->{k}")] = float(distances.mean())

    def uniform_layers(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{stream: {layer: {"q->k": pixels}}}``: the distance uniform attention over the keys would
        give (the mean distance between every query position and every key position of the grids
        that layer attends), the reference for "local" and "global"."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for (stream, layer, pair), value in self._uniform.items():
            out.setdefault(stream, {}).setdefault(layer, {})[pair] = value
        return out

    def uniform(self) -> dict[str, dict[str, float]]:
        """``{stream: {"q->k": pixels}}``, one reference per stream and pair, as files before per-layer
        references held: the reference of :meth:`uniform_layers`, the same for every layer of a
        self-attention stream; where the layers attend different grids (``layerwise``'s
        cross-attention) the mean of the layers' references, a summary only: read :meth:`uniform_layers`."""
        out: dict[str, dict[str, float]] = {}
        for stream, layers in self.uniform_layers().items():
            values: dict[str, list[float]] = {}
            for pairs in layers.values():
                for pair, value in pairs.items():
                    values.setdefault(pair, []).append(value)
            out[stream] = {pair: sum(v) / len(v) for pair, v in values.items()}
        return out

    def result(self) -> dict[str, Any]:
        """``{stream: {layer: {"q->k": [pixels per head]}}}`` averaged over the images seen."""
        out: dict[str, Any] = {}
        for (stream, layer, pair), total in self._sums.items():
            out.setdefault(stream, {}).setdefault(layer, {})[pair] = (total / max(self.images, 1)).tolist()
        return out
