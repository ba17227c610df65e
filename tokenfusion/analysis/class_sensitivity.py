"""Class sensitivity of the explanation maps: how much a method's map changes between the predicted
class and the runner-up. A map that does not change with the class is not about the class.

For each image (the first ``images`` of the set) and method, the maps for the two classes (at image
resolution, in [0, 1]) are compared by Spearman rank correlation (1: the same ranking of regions) and by half the L1
distance of the maps normalised to sum 1 (0: identical, 1: disjoint). Pairs where either map is
blank (constant) are counted apart and left out of both.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..explain import Explainer, spearman
from ..explain.result import is_blank
from ..models import TokenFusionModel

__all__ = ["DEFAULT_METHODS", "ClassSensitivity", "map_change"]

DEFAULT_METHODS = ("rollout", "gradcam", "integrated_gradients")
OPTIONS = {"integrated_gradients": {"n_steps": 16, "internal_batch_size": 16}}


def map_change(a: Tensor, b: Tensor) -> tuple[float, float]:
    """``(spearman, half L1 distance)`` of two non-negative maps of one shape."""
    pa, pb = a.double().flatten(), b.double().flatten()
    return spearman(pa, pb), float((pa / pa.sum() - pb / pb.sum()).abs().sum() / 2)


class ClassSensitivity:
    """Accumulates :func:`map_change` over the first ``images`` images for each method in ``methods``
    that applies to ``model`` (default targets; ``integrated_gradients`` with 16 steps)."""

    def __init__(self, model: TokenFusionModel, images: int, methods: tuple[str, ...] = DEFAULT_METHODS) -> None:
        self.model = model
        self.images = images
        self.methods = methods
        self.seen = 0
        self._sums: dict[str, list[float]] = {}  # method -> [spearman, l1, pairs, blank pairs]

    def update(self, x: Tensor) -> None:
        """Explain the next images of batch ``x`` ``(B, 3, H, W)`` until ``images`` have been seen."""
        for image in x[: max(self.images - self.seen, 0)]:
            session = Explainer(self.model, image)
            first, second = session.logits[0].topk(2).indices.tolist()
            for method in (m for m in self.methods if m in session.methods):
                with torch.enable_grad():
                    a, b = (session.explain(method, target=t, **OPTIONS.get(method, {})) for t in (first, second))
                sums = self._sums.setdefault(method, [0.0, 0.0, 0, 0])
                if is_blank(a.map) or is_blank(b.map):
                    sums[3] += 1
                    continue
                rho, l1 = map_change(a.map, b.map)
                sums[0], sums[1], sums[2] = sums[0] + rho, sums[1] + l1, sums[2] + 1
            self.seen += 1

    def result(self) -> dict[str, Any]:
        """``{method: {"spearman": mean, "l1": mean, "pairs": n, "blank_pairs": n}}``."""
        return {m: {"spearman": s[0] / max(s[2], 1), "l1": s[1] / max(s[2], 1), "pairs": s[2], "blank_pairs": s[3]}
                for m, s in self._sums.items()}
