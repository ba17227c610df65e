"""Minibatch linear CKA (Kornblith et al. 2019) with the unbiased HSIC estimator (Song et al. 2012),
accumulated over minibatches as in Nguyen et al. 2021: ``CKA = mean_b HSIC1(K_b, L_b) /
sqrt(mean_b HSIC1(K_b, K_b) * mean_b HSIC1(L_b, L_b))``, with ``K_b = X_b X_b^T`` the linear Gram
matrix of minibatch ``b``. Memory is two ``(F, F)`` tables for ``F`` features, whatever the set size.

What a minibatch's rows are depends on the pair of features (:class:`MinibatchCKA`): two layers of
tokens on the same grid compare token by token (one row per token of every image, ``n_images *
n_tokens`` rows: token ``t`` of image ``b`` in one layer against token ``t`` of image ``b`` in the
other), so CKA sees where in the image each representation holds what; layers on different grids
(a 16x16 trunk stage against 8x8 patch tokens) have no token-to-token match and compare the mean
of each image's tokens (one row per image). Token rows are too many for Gram matrices; their
unbiased HSIC is computed from the cross-covariance ``X^T Y`` instead (:func:`hsic1_tokens`),
the same number.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["REPRESENTATIONS", "MinibatchCKA", "cka", "gram", "hsic1", "hsic1_tokens"]

#: What the rows of a pair's minibatch are: every token of every image, or each image's mean token.
REPRESENTATIONS = ("tokens", "mean")


def gram(features: Tensor) -> Tensor:
    """Linear Gram matrices with a zero diagonal: ``(..., n, d) -> (..., n, n)``, in float64."""
    x = features.double()
    k = x @ x.transpose(-1, -2)
    return k - torch.diag_embed(torch.diagonal(k, dim1=-2, dim2=-1))


def hsic1(grams: Tensor) -> Tensor:
    """Unbiased HSIC between every pair of ``(F, n, n)`` zero-diagonal Gram matrices: ``(F, F)``.
    Needs ``n >= 4``."""
    n = grams.shape[-1]
    if n < 4:
        raise ValueError(f"The unbiased HSIC needs at least 4 examples per batch, got {n}")
    flat = grams.flatten(1)
    trace_kl = flat @ flat.T  # tr(K L) for symmetric K, L
    totals = grams.sum((1, 2))
    rows = grams.sum(2)  # (F, n): K 1
    return (trace_kl + totals[:, None] * totals[None, :] / ((n - 1) * (n - 2)) - 2 / (n - 2) * rows @ rows.T) / (
        n * (n - 3)
    )


def cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA with the unbiased HSIC of one batch: ``x`` ``(n, d1)``, ``y`` ``(n, d2)``."""
    h = hsic1(torch.stack([gram(x), gram(y)]))
    return float(h[0, 1] / (h[0, 0] * h[1, 1]).sqrt())


def _token_statistics(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For ``x`` ``(n, d)`` float64: squared row norms ``a`` (the Gram diagonal), ``r = K 1`` of the
    zero-diagonal Gram ``K`` (``X (X^T 1) - a``) and ``1^T K 1``."""
    a = (x * x).sum(1)
    s = x.sum(0)
    return a, x @ s - a, s @ s - a.sum()


def hsic1_tokens(features: list[Tensor]) -> Tensor:
    """The unbiased HSIC of :func:`hsic1` between the linear kernels of every pair of ``(n, d_f)``
    features (same ``n`` rows), without ``(n, n)`` Gram matrices: with ``K = X X^T`` less its diagonal
    ``a``, ``tr(K L) = ||X^T Y||^2 - a.b``, ``K 1 = X X^T 1 - a``. Cost ``n d_f d_g`` per pair. ``(F, F)``."""
    n = features[0].shape[0]
    if n < 4:
        raise ValueError(f"The unbiased HSIC needs at least 4 examples per batch, got {n}")
    stats = [_token_statistics(f.double()) for f in features]
    out = torch.zeros(len(features), len(features), dtype=torch.float64)
    for i, x in enumerate(features):
        x = x.double()
        a, r, total = stats[i]
        for j in range(i, len(features)):
            y = x if j == i else features[j].double()
            b, q, other = stats[j]
            trace_kl = (x.T @ y).square().sum() - a @ b
            value = (trace_kl + total * other / ((n - 1) * (n - 2)) - 2 / (n - 2) * (r @ q)) / (n * (n - 3))
            out[i, j] = out[j, i] = float(value)
    return out


class MinibatchCKA:
    """CKA between every pair of named features, accumulated batch by batch.

    ``update({name: features}, grids)`` adds one minibatch (every call must give the same names, rows the
    same images, the same grids). A feature is one vector per image ``(B, d)``, or one per token
    ``(B, N, d)`` laid on ``grids[name]`` ``(h, w)`` (``h * w = N``). Two token features on the same
    grid are compared token by token (representation ``"tokens"``: ``B * N`` rows, token by token);
    every other pair on each image's mean token (``"mean"``: ``B`` rows; a ``(B, d)`` feature is its
    own mean). :meth:`result` records which for every pair. Batches of fewer than 4 images are
    skipped (the estimator needs 4) and counted.
    """

    def __init__(self) -> None:
        self.names: list[str] | None = None
        self.grids: list[tuple[int, int] | None] = []
        self._sum: Tensor | None = None  # (F, F) HSIC of the images' mean tokens, summed over batches
        self._token_sum: Tensor | None = None  # (F, F) HSIC of the tokens, where the grids match
        self.batches = 0
        self.skipped_images = 0

    def update(self, features: dict[str, Tensor], grids: dict[str, tuple[int, int]] | None = None) -> None:
        names = list(features)
        grids = grids or {}
        found: list[tuple[int, int] | None] = []
        for name, values in features.items():
            if values.dim() == 3:
                if name not in grids:
                    raise ValueError(f"Tokens {name!r} {tuple(values.shape)} need their grid: pass grids[{name!r}]")
                grid = (int(grids[name][0]), int(grids[name][1]))
                if grid[0] * grid[1] != values.shape[1]:
                    raise ValueError(f"{name!r} holds {values.shape[1]} tokens, not a {grid} grid")
                found.append(grid)
            elif values.dim() == 2:
                found.append(None)
            else:
                raise ValueError(f"{name!r}: expected (B, d) or (B, N, d) features, got {tuple(values.shape)}")
        if self.names is None:
            self.names, self.grids = names, found
        elif names != self.names:
            raise ValueError(f"Features changed between batches: {names} after {self.names}")
        elif found != self.grids:
            raise ValueError(f"Grids changed between batches: {found} after {self.grids}")
        n = len(next(iter(features.values())))
        if n < 4:
            self.skipped_images += n
            return
        # one Gram matrix at a time: the stack of F (n, n) matrices is the only large tensor
        grams = torch.stack([gram(f.mean(1) if f.dim() == 3 else f).cpu() for f in features.values()])
        h = hsic1(grams)
        self._sum = h if self._sum is None else self._sum + h
        tokens = torch.zeros_like(h)
        values = list(features.values())
        for grid in dict.fromkeys(g for g in found if g is not None):
            group = [i for i, g in enumerate(found) if g == grid]
            block = hsic1_tokens([values[i].reshape(-1, values[i].shape[-1]) for i in group])
            tokens[torch.tensor(group)[:, None], torch.tensor(group)[None, :]] = block
        self._token_sum = tokens if self._token_sum is None else self._token_sum + tokens
        self.batches += 1

    def _matched(self) -> Tensor:
        """``(F, F)`` True where both features are tokens on the same grid."""
        grids = self.grids
        return torch.tensor([[a is not None and a == b for b in grids] for a in grids], dtype=torch.bool)

    def matrix(self) -> Tensor:
        """``(F, F)`` CKA between the features, in the order of :attr:`names`: token by token where
        the grids match, on the images' mean tokens elsewhere (:meth:`representations`)."""
        if self._sum is None or self._token_sum is None:
            raise ValueError("No batch of at least 4 images was seen")
        def normalised(h: Tensor) -> Tensor:
            diagonal = h.diagonal().clamp_min(torch.finfo(torch.float64).tiny)
            return h / (diagonal[:, None] * diagonal[None, :]).sqrt()

        return torch.where(self._matched(), normalised(self._token_sum), normalised(self._sum))

    def representations(self) -> list[list[str]]:
        """``(F, F)`` what each pair's CKA compares: ``"tokens"`` (every token of every image, the
        grids matching) or ``"mean"`` (each image's mean token)."""
        return [[REPRESENTATIONS[0] if m else REPRESENTATIONS[1] for m in row] for row in self._matched().tolist()]

    def result(self) -> dict[str, Any]:
        """``names``, ``cka`` ``(F, F)``, ``representation`` ``(F, F)`` (``"tokens"`` or ``"mean"``),
        ``grids`` (``[h, w]`` per feature, None for one vector per image), ``batches``, ``skipped_images``."""
        return {"names": self.names, "cka": self.matrix().tolist(), "representation": self.representations(),
                "grids": [list(g) if g is not None else None for g in self.grids], "batches": self.batches,
                "skipped_images": self.skipped_images}
