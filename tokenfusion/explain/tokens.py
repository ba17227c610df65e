"""One token under the microscope: where it looks, and what part of the image it stands for.

:func:`token_attention` reads one query token's attention row at one layer from a trace, split by
the kind of token it lands on, with the token's place in the image: its patch, or for a CNN token
its receptive field, measured by backpropagating the token to the pixels
(:func:`receptive_field`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..models import TokenFusionModel, Trace
from ._utils import ExplainError
from .attention import fuse_heads

__all__ = ["Box", "TokenAttention", "receptive_field", "token_attention", "token_box"]

Box = tuple[float, float, float, float]  # (left, top, right, bottom) in input pixels


@dataclass
class TokenAttention:
    """The attention row of the ``kind`` token at grid ``cell`` (row, column), sequence position
    ``index``, at self-attention ``layer``: ``maps[key kind]`` ``(h, w)`` its weights over that kind's
    tokens, ``on_class`` its weight on class tokens; ``cross`` ``(h, w)`` (``layerwise``) its
    cross-attention row over the CNN keys entering just before ``layer``; ``box`` where it sits in
    the input (its patch, or its CNN receptive field)."""

    layer: str
    kind: str
    cell: tuple[int, int]
    index: int
    maps: dict[str, Tensor]
    on_class: float
    cross: Tensor | None
    cross_layer: str | None
    box: Box


def _cell_index(trace: Trace, layer: str, kind: str, cell: tuple[int, int]) -> int:
    if layer not in trace.layouts:
        raise ExplainError(f"No self-attention layer {layer!r}. Layers: {list(trace.layouts)}")
    layout = trace.layouts[layer]
    try:
        span = layout.grid_span(kind)
    except KeyError:
        raise ExplainError(f"Layer {layer!r} has no {kind!r} tokens; it holds {list(layout.kinds)}") from None
    h, w = span.grid  # type: ignore[misc]
    row, col = cell
    if not (0 <= row < h and 0 <= col < w):
        raise ExplainError(f"Cell {cell} is outside the {h}x{w} grid of {kind!r} tokens")
    return span.start + row * w + col


def receptive_field(
    model: TokenFusionModel, x: Tensor, modules: tuple[str, ...], grid: tuple[int, int], cell: tuple[int, int],
) -> Box:
    """The box of input pixels whose gradient on the token at ``cell`` is non-zero, for the image
    ``x`` ``(1, 3, H, W)``: the token is read from whichever of the token ``modules`` (their forward
    returns ``(tokens (B, N, D), grid)``) makes a ``grid`` of tokens, in one forward and one backward."""
    captured: list[tuple[Tensor, tuple[int, int]]] = []
    handles = [model.get_submodule(m).register_forward_hook(lambda m, i, out: captured.append(out)) for m in modules]
    image = x.detach().clone().requires_grad_(True)
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            model(image)
            tokens = next((t for t, g in captured if tuple(g) == tuple(grid)), None)
            if tokens is None:
                raise ExplainError(f"No token module of {list(modules)} makes a {grid} grid")
            tokens[0, cell[0] * grid[1] + cell[1]].sum().backward()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    moved = image.grad[0].abs().sum(0) > 0  # (H, W)
    rows, cols = moved.any(1).nonzero().flatten(), moved.any(0).nonzero().flatten()
    if len(rows) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def token_box(grid: tuple[int, int], size: tuple[int, int], cell: tuple[int, int]) -> Box:
    """The block of an input of ``size`` ``(H, W)`` that one cell of a ``grid`` ``(h, w)`` covers."""
    (h, w), (height, width), (row, col) = grid, size, cell
    return (col * width / w, row * height / h, (col + 1) * width / w, (row + 1) * height / h)


def token_attention(
    model: TokenFusionModel, x: Tensor, trace: Trace, layer: str, kind: str, cell: tuple[int, int],
    head: int | str | None = "mean",
) -> TokenAttention:
    """Where the ``kind`` token at ``cell`` looks at ``layer`` (``head`` an index or a fusion over
    heads), read from ``trace`` of ``model`` on ``x`` ``(1, 3, H, W)``."""
    index = _cell_index(trace, layer, kind, cell)
    layout = trace.layouts[layer]
    row = fuse_heads(trace.attention[layer], head)[0, index]  # (N,)
    maps = {k: layout.to_grid(row, k).cpu() for k in layout.kinds if k != "cls"}
    on_class = float(row[layout.mask("cls").to(row.device)].sum())
    structure = model.structure
    cross = cross_layer = None
    entry = next((e for e in structure.cross_entries if e.before == layer), None)
    if entry is not None:
        record = trace.cross_attention[entry.layer]
        cross = record.key_layout.to_grid(fuse_heads(record.weights, head)[0, index], "cnn").cpu()
        cross_layer = entry.layer
    size = tuple(x.shape[-2:])
    if kind == "cnn":
        box = receptive_field(model, x, structure.token_modules["cnn"], layout.grid(kind), cell)
    else:
        box = token_box(layout.grid(kind), size, cell)  # type: ignore[arg-type]
    return TokenAttention(layer, kind, cell, index, maps, on_class, cross, cross_layer, box)
