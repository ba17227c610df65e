"""Token interventions: one kind of a fusion model's tokens changed as they are made, to measure what
the model takes from them.

Each intervention hooks the output of every token module of the kind (``model.structure.token_modules``)
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

Nothing here knows an architecture: ``dataset_mean`` needs :func:`dataset_means` of the model first.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .models import TokenFusionModel

__all__ = ["INTERVENTIONS", "describe", "dataset_means", "intervene"]

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
