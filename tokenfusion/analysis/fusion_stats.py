"""Fusion weights over a data set: the attention share of each kind of token per layer and head
(:func:`~tokenfusion.explain.fusion_weights_of` of every batch), its mean and spread overall and
its mean per class; ``layerwise``'s gates and injected-update ratios."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..explain import fusion_weights_of
from ..models import Trace

__all__ = ["FusionStats", "Moments"]

BINS = 20  # histogram of the class token's share, over [0, 1]


class Moments:
    """Running count, mean and standard deviation of samples of a fixed shape (sums in float64)."""

    def __init__(self) -> None:
        self.n = 0
        self._sum: Tensor | float = 0.0
        self._sq: Tensor | float = 0.0

    def update(self, samples: Tensor) -> None:
        """``samples``: ``(B, ...)``, one row per image."""
        s = samples.detach().double().cpu()
        self.n += len(s)
        self._sum = self._sum + s.sum(0)
        self._sq = self._sq + (s * s).sum(0)

    @property
    def mean(self) -> Tensor:
        return torch.as_tensor(self._sum) / max(self.n, 1)

    @property
    def std(self) -> Tensor:
        variance = torch.as_tensor(self._sq) / max(self.n, 1) - self.mean ** 2
        return (variance.clamp_min(0) * self.n / max(self.n - 1, 1)).sqrt()


class FusionStats:
    """Fusion weights of one model accumulated over batches (fixed memory)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.layers: list[str] | None = None
        self.cross_layers: list[str] | None = None
        self.gates: list[float] | None = None
        self.cls_share: dict[str, Moments] = {}
        self.mean_share: dict[str, Moments] = {}
        self.update_ratio = Moments()
        self._class_sum: dict[str, Tensor] = {}  # kind -> (classes, L, heads)
        self._class_count = torch.zeros(num_classes, dtype=torch.float64)
        self._histogram: dict[str, Tensor] = {}  # kind -> (L, heads, BINS)

    def update(self, trace: Trace, labels: Tensor) -> None:
        weights = fusion_weights_of(trace)
        labels = labels.cpu()
        self.layers = weights.layers
        self._class_count += torch.bincount(labels, minlength=self.num_classes).double()
        for kind, share in weights.cls_share.items():
            share = share.double().cpu()  # (B, L, heads)
            self.cls_share.setdefault(kind, Moments()).update(share)
            self.mean_share.setdefault(kind, Moments()).update(weights.mean_share[kind])
            sums = self._class_sum.setdefault(kind, torch.zeros(self.num_classes, *share.shape[1:], dtype=torch.float64))
            sums.index_add_(0, labels, share)
            bins = (share * BINS).long().clamp(0, BINS - 1)
            hist = self._histogram.setdefault(kind, torch.zeros(*share.shape[1:], BINS, dtype=torch.long))
            hist += torch.nn.functional.one_hot(bins, BINS).sum(0)
        if weights.gates is not None:
            self.cross_layers = weights.cross_layers
            self.gates = weights.gates.tolist()
            self.update_ratio.update(weights.update_ratio)

    def result(self) -> dict[str, Any]:
        """Per kind ``(L, heads)`` tables as nested lists: ``cls_share_mean``, ``cls_share_std``,
        ``mean_share_mean``, ``mean_share_std``, ``cls_share_per_class`` ``(classes, L, heads)``,
        ``cls_share_histogram`` ``(L, heads, bins)`` over [0, 1]; for gated cross-attention the
        ``gates`` and the ``update_ratio`` mean and std per layer."""
        out: dict[str, Any] = {"layers": self.layers or [], "bins": BINS}
        counts = self._class_count.clamp_min(1)[:, None, None]
        for kind, moments in self.cls_share.items():
            out[kind] = {
                "cls_share_mean": moments.mean.tolist(), "cls_share_std": moments.std.tolist(),
                "mean_share_mean": self.mean_share[kind].mean.tolist(),
                "mean_share_std": self.mean_share[kind].std.tolist(),
                "cls_share_per_class": (self._class_sum[kind] / counts).tolist(),
                "cls_share_histogram": self._histogram[kind].tolist(),
            }
        if self.gates is not None:
            out["cross"] = {"layers": self.cross_layers, "gates": self.gates,
                            "update_ratio_mean": self.update_ratio.mean.tolist(),
                            "update_ratio_std": self.update_ratio.std.tolist()}
        return out
