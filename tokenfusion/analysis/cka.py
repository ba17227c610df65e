"""Minibatch linear CKA (Kornblith et al. 2019) with the unbiased HSIC estimator (Song et al. 2012),
accumulated over minibatches as in Nguyen et al. 2021: ``CKA = mean_b HSIC1(K_b, L_b) /
sqrt(mean_b HSIC1(K_b, K_b) * mean_b HSIC1(L_b, L_b))``, with ``K_b = X_b X_b^T`` the linear Gram
matrix of minibatch ``b``. Memory is one ``(F, F)`` table for ``F`` features, whatever the set size.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["MinibatchCKA", "cka", "gram", "hsic1"]


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


class MinibatchCKA:
    """CKA between every pair of named features, accumulated batch by batch.

    ``update({name: (B, d)})`` adds one minibatch (every call must give the same names, rows the
    same images); batches of fewer than 4 images are skipped (the estimator needs 4) and counted.
    """

    def __init__(self) -> None:
        self.names: list[str] | None = None
        self._sum: Tensor | None = None
        self.batches = 0
        self.skipped_images = 0

    def update(self, features: dict[str, Tensor]) -> None:
        names = list(features)
        if self.names is None:
            self.names = names
        elif names != self.names:
            raise ValueError(f"Features changed between batches: {names} after {self.names}")
        n = len(next(iter(features.values())))
        if n < 4:
            self.skipped_images += n
            return
        # one Gram matrix at a time: the stack of F (n, n) matrices is the only large tensor
        grams = torch.stack([gram(f.flatten(1)).cpu() for f in features.values()])
        h = hsic1(grams)
        self._sum = h if self._sum is None else self._sum + h
        self.batches += 1

    def matrix(self) -> Tensor:
        """``(F, F)`` CKA between the features, in the order of :attr:`names`."""
        if self._sum is None:
            raise ValueError("No batch of at least 4 images was seen")
        diagonal = self._sum.diagonal().clamp_min(torch.finfo(torch.float64).tiny)
        return self._sum / (diagonal[:, None] * diagonal[None, :]).sqrt()

    def result(self) -> dict[str, Any]:
        return {"names": self.names, "cka": self.matrix().tolist(), "batches": self.batches,
                "skipped_images": self.skipped_images}
