"""Token interventions, in one home: what a model does when some of its tokens are taken away.

Two places to take tokens away. **As they are made** (:func:`intervene`), one kind of a fusion
model's tokens changed, to measure what the model takes from them; each intervention hooks the output of every token module of the kind (``model.structure.token_modules``)
and rewrites its ``(B, n, D)`` tokens, each of which is a content (the projected image feature) plus
the position embedding of its place on the grid:

- ``zero``: every token zeroed, position embedding included ("without CNN tokens"). This is what a
  model trained with kind dropout (``config.kind_drop_rate``) sees for the kind an image loses.
- ``dataset_mean``: every token replaced by its mean over a set of training images, per position
  ("without CNN tokens", the data-set mean): the tokens carry nothing of this image.
- ``contents_averaged``: each token's content replaced by the mean content of its image's tokens of
  the kind, position embeddings kept: the image's average remains, where it varies is gone.
- ``layout_shuffled``: the contents permuted among the positions (per image, at random), position
  embeddings re-added in place: what each token holds is kept, where it is is not.

**Where they are read** (:func:`ablate_from`, :func:`ablate_region`), at the places a kind is read, in
forward order (:func:`ablation_sites`): every self-attention block whose stream holds the kind
(``late``'s CNN tokens: ``cnn_blocks.0-3``, then ``fusion_blocks.0``) and every cross-attention entry
whose keys that kind's token modules make (``layerwise``'s CNN tokens):

- from place ``k`` on (1-based; ``k = L + 1`` removes nothing): a forward pre-hook replaces the kind's
  positions (from the trace's layout) of each block's input by their mean (per image and channel), by
  zero, or by Gaussian noise of their per-image mean and standard deviation per channel
  (:data:`MODES`);
- a region of the image (``(left, top, right, bottom)``, fractions): only the tokens under it
  (:func:`cells_under`) are replaced so; a region covering the image is the kind removed;
- cross-attention closed (:func:`closed`): the entry returns the stream it was given (gate
  contribution zero), whatever the mode; under a region it only no longer sees the region's keys.

Nothing here knows an architecture: the places come from ``model.structure``, and ``dataset_mean``
needs :func:`dataset_means` of the model first.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import torch
from torch import Tensor, nn

from .models import ModelStructure, TokenFusionModel, TokenLayout

__all__ = ["INTERVENTIONS", "MODES", "Region", "ablate_from", "ablate_region", "ablation_sites", "cells_under",
           "closed", "dataset_means", "describe", "intervene", "places"]

#: How tokens are replaced where they are read: their mean, zero, or noise of their statistics.
MODES = ("mean", "zero", "noise")

Region = tuple[float, float, float, float]  # (left, top, right, bottom), fractions of the image's width and height

#: Every intervention and what it does, in words (``{kind}``: CNN or patch).
INTERVENTIONS: dict[str, str] = {
    "zero": "without {kind} tokens (zeroed)",
    "dataset_mean": "without {kind} tokens (data-set mean)",
    "contents_averaged": "{kind} tokens' contents averaged",
    "layout_shuffled": "{kind} tokens' layout shuffled",
}
_KIND_NAMES = {"cnn": "CNN", "patch": "patch"}


def describe(kind: str, how: str) -> str:
    """The intervention ``how`` on ``kind`` tokens in words, e.g. "without CNN tokens (zeroed)"."""
    return INTERVENTIONS[how].format(kind=_KIND_NAMES.get(kind, kind))


def _token_modules(model: TokenFusionModel, kind: str) -> list[nn.Module]:
    names = model.structure.token_modules.get(kind, ())
    if not names:
        raise ValueError(f"{model.config.arch!r} has no {kind!r} tokens. It has {list(model.structure.token_kinds)}")
    return [model.get_submodule(name) for name in names]


@torch.no_grad()
def dataset_means(model: TokenFusionModel, images: Tensor, kind: str, batch_size: int = 256) -> list[Tensor]:
    """The ``(n, D)`` mean over ``images`` ``(N, 3, H, W)`` (normalised, at the model's input size) of the
    tokens of each of ``kind``'s token modules, per position: what ``dataset_mean`` puts in their place."""
    sums: list[Tensor | None] = [None] * len(_token_modules(model, kind))

    def adder(i: int):
        def hook(module: nn.Module, inputs: tuple, output: tuple[Tensor, tuple[int, int]]) -> None:
            total = output[0].double().sum(0)
            sums[i] = total if sums[i] is None else sums[i] + total
        return hook

    handles = [m.register_forward_hook(adder(i)) for i, m in enumerate(_token_modules(model, kind))]
    was_training = model.training
    model.eval()
    try:
        for batch in images.split(batch_size):
            model(batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [(s / len(images)).float() for s in sums]


def _rewrite(
    tokens: Tensor, position: Tensor, how: str, mean: Tensor | None, generator: torch.Generator | None
) -> Tensor:
    """``(B, n, D)`` tokens (contents plus ``position`` ``(1, n, D)``) rewritten by the intervention ``how``."""
    if how == "zero":
        return torch.zeros_like(tokens)
    if how == "dataset_mean":
        return mean.to(tokens).expand_as(tokens)
    contents = tokens - position
    if how == "contents_averaged":
        return contents.mean(1, keepdim=True) + position
    order = torch.rand(tokens.shape[:2], generator=generator, device="cpu").argsort(1).to(tokens.device)
    return contents.gather(1, order[..., None].expand_as(contents)) + position


@contextmanager
def intervene(
    model: TokenFusionModel, kind: str, how: str, *, means: list[Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Within the block, every forward of ``model`` makes its ``kind`` tokens with the intervention ``how``
    (a key of :data:`INTERVENTIONS`). ``means``: :func:`dataset_means` of the model, for ``dataset_mean``;
    ``generator``: the permutations of ``layout_shuffled``. Yields the number of token modules hooked; the
    hooks are removed on exit, also on error."""
    if how not in INTERVENTIONS:
        raise ValueError(f"Unknown intervention {how!r}. Expected one of {list(INTERVENTIONS)}")
    modules = _token_modules(model, kind)
    if how == "dataset_mean" and (means is None or len(means) != len(modules)):
        raise ValueError(f"dataset_mean needs dataset_means(model, images, {kind!r}): one mean per token module")

    def rewriter(module: nn.Module, mean: Tensor | None):
        def hook(_: nn.Module, inputs: tuple, output: tuple[Tensor, tuple[int, int]]) -> tuple[Tensor, tuple[int, int]]:
            tokens, grid = output
            if mean is not None and mean.shape != tokens.shape[1:]:
                raise ValueError(f"The data-set mean holds {tuple(mean.shape)} tokens, this input makes "
                                 f"{tuple(tokens.shape[1:])}: compute dataset_means at this input size")
            return _rewrite(tokens, module.pos_embed(grid), how, mean, generator), grid
        return hook

    handles = [m.register_forward_hook(rewriter(m, means[i] if how == "dataset_mean" else None))
               for i, m in enumerate(modules)]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


# Where tokens are read: from place k on, under a region, cross-attention closed.

def ablation_sites(structure: ModelStructure, kind: str) -> list[tuple[str, str]]:
    """``[(module name, "block" or "cross"), ...]``: where ``kind`` tokens are read, in forward order."""
    modules = set(structure.token_modules.get(kind, ()))
    keys_of = {e.layer: e.tokens for e in structure.cross_entries}  # cross entry -> the module making its keys
    blocks = set(structure.attention_layers(kind))
    return [(name, "cross" if name in keys_of else "block") for name in _forward_order(structure)
            if keys_of.get(name) in modules or name in blocks]


def _forward_order(structure: ModelStructure) -> list[str]:
    """Every self-attention block and cross-attention entry, in the order the forward calls them (an
    entry just before the block it precedes)."""
    return [name for stream in structure.streams for layer in stream.layers
            for name in (*(e.layer for e in structure.cross_entries if e.before == layer), layer)]


def _replace(tokens: Tensor, mode: str, generator: torch.Generator | None) -> Tensor:
    """``(B, n, D)`` tokens replaced by their mean, zero or noise (per image and channel)."""
    if mode == "zero":
        return torch.zeros_like(tokens)
    mean = tokens.mean(1, keepdim=True)
    if mode == "mean":
        return mean.expand_as(tokens)
    noise = torch.randn(tokens.shape, generator=generator, device="cpu").to(tokens)
    return mean + noise * tokens.std(1, keepdim=True, correction=0)


def places(structure: ModelStructure, kind: str | None) -> list[str]:
    """The modules that read ``kind`` tokens, in forward order (:func:`ablation_sites`). With ``kind``
    None (every kind, as a region is removed), the ``k``-th place of each kind joined by " + "
    (``"cnn_blocks.0 + patch_blocks.0"``)."""
    if kind is not None:
        return [name for name, _ in ablation_sites(structure, kind)]
    each = [places(structure, k) for k in structure.token_kinds]
    return [" + ".join(dict.fromkeys(p[i] for p in each if i < len(p))) for i in range(max(map(len, each), default=0))]


def cells_under(region: Region, kind: str, grid: tuple[int, int]) -> Tensor:
    """The ``(h, w)`` boolean mask of the cells of a ``grid`` of ``kind`` tokens under ``region``: a
    patch overlaps it (an area shared), a CNN token's position, its cell's centre, falls in it (a
    CNN token's receptive field is wider than its cell, so overlap would take too many)."""
    left, top, right, bottom = region
    (h, w) = grid
    if right <= left or bottom <= top:
        return torch.zeros(grid, dtype=torch.bool)
    rows, cols = (torch.arange(n, dtype=torch.float64) / n for n in grid)  # each cell's top or left edge
    if kind == "patch":
        under_rows, under_cols = (rows < bottom) & (rows + 1 / h > top), (cols < right) & (cols + 1 / w > left)
    else:
        centre_rows, centre_cols = rows + 0.5 / h, cols + 0.5 / w
        under_rows = (centre_rows >= top) & (centre_rows < bottom)
        under_cols = (centre_cols >= left) & (centre_cols < right)
    return under_rows[:, None] & under_cols[None, :]


@contextmanager
def ablate_from(
    model: TokenFusionModel, layouts: dict[str, TokenLayout], kind: str, k: int, mode: str = "mean",
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Within the block, ``kind`` tokens are ablated at places ``k..L`` of :func:`ablation_sites`
    (1-based; ``k = L + 1``: nothing). ``layouts``: every self-attention layer's layout
    (``trace.layouts`` of a traced forward on inputs of the same size). Yields the number of places
    ablated; the hooks are removed on exit, also on error."""
    if mode not in MODES:
        raise ValueError(f"Unknown ablation mode {mode!r}. Expected one of {list(MODES)}")
    sites = ablation_sites(model.structure, kind)
    if not 1 <= k <= len(sites) + 1:
        raise ValueError(f"k must be in 1..{len(sites) + 1} for {kind!r} tokens, got {k}")
    with ExitStack() as stack:
        for name, site in sites[k - 1:]:
            module = model.get_submodule(name)
            if site == "cross":
                stack.enter_context(closed(module))
            else:
                mask = layouts[name].mask(kind)
                hook = _region_hook([(mask, mask)], mode, generator)  # the region: every token of the kind
                stack.callback(module.register_forward_pre_hook(hook).remove)
        yield len(sites) - k + 1


@contextmanager
def closed(module: nn.Module) -> Iterator[None]:
    """Within the block, the cross-attention entry ``module`` is closed without being computed: it
    returns the stream it was given (gate contribution zero); traced, also its attention weights."""
    compute = module.forward

    def through(x: Tensor, context: Tensor, *, need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        return (x, compute(x, context, need_weights=True)[1]) if need_weights else x

    module.forward = through
    try:
        yield
    finally:
        del module.forward


@contextmanager
def ablate_region(
    model: TokenFusionModel, layouts: dict[str, TokenLayout], region: Region, kinds: tuple[str, ...], k: int,
    mode: str = "mean", generator: torch.Generator | None = None,
) -> Iterator[list[str]]:
    """Within the block, the tokens of each of ``kinds`` under ``region`` (:func:`cells_under`) are
    ablated at that kind's places ``k..`` of :func:`ablation_sites` (1-based; past the last: nothing there).
    At a block they are replaced as :func:`ablate_from` replaces the whole kind (by the mean of every
    token of their kind, by zero, or by noise): a region holding every token of a kind ablates it as
    :func:`ablate_from` does. A cross-attention entry no longer sees the region's keys, whatever the
    mode, and is closed when none is left. ``layouts``: every self-attention layer's layout and every
    cross-attention entry's key layout, by module name. Yields the places, in forward order."""
    if mode not in MODES:
        raise ValueError(f"Unknown ablation mode {mode!r}. Expected one of {list(MODES)}")
    sites = {kind: ablation_sites(model.structure, kind) for kind in kinds}
    depth = max((len(s) for s in sites.values()), default=0)
    if not 1 <= k <= depth + 1:
        raise ValueError(f"k must be in 1..{depth + 1}, got {k}")
    blocks: dict[str, list[tuple[Tensor, Tensor]]] = {}
    keys: dict[str, Tensor] = {}
    for kind, found in sites.items():
        for name, site in found[k - 1:]:
            layout = layouts[name]
            span = layout.grid_span(kind)  # at a cross entry: its keys, which are tokens of this kind
            under = torch.zeros(layout.num_tokens, dtype=torch.bool)
            under[span.start:span.stop] = cells_under(region, kind, span.grid).flatten()  # type: ignore[arg-type]
            if site == "cross":
                keys[name] = ~under
            else:
                blocks.setdefault(name, []).append((layout.mask(kind), under))
    order = [name for name in _forward_order(model.structure) if name in blocks or name in keys]
    with ExitStack() as stack:
        for name, groups in blocks.items():
            hook = _region_hook(groups, mode, generator)
            stack.callback(model.get_submodule(name).register_forward_pre_hook(hook).remove)
        for name, keep in keys.items():
            module = model.get_submodule(name)
            if keep.any():
                stack.callback(module.register_forward_pre_hook(_kept_keys(keep)).remove)
            else:
                stack.enter_context(closed(module))
        yield order


def _region_hook(groups: list[tuple[Tensor, Tensor]], mode: str,
                 generator: torch.Generator | None) -> Callable[[nn.Module, tuple], tuple]:
    """``groups``: ``(positions of a kind (N,), positions of its tokens in the region (N,))``."""
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0].clone()
        for kind, region in groups:
            kind, region = kind.to(x.device), region.to(x.device)
            x[:, region] = _replace(x[:, kind], mode, generator)[:, region[kind]]
        return (x, *args[1:])
    return hook


def _kept_keys(keep: Tensor) -> Callable[[nn.Module, tuple], tuple]:
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (args[0], args[1][:, keep.to(args[1].device)], *args[2:])
    return hook


