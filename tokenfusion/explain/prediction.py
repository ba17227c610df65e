"""What a model predicts for one image: the top-k classes and their probabilities."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..models import TokenFusionModel
from ._utils import device_of

__all__ = ["Prediction", "predict", "top_k"]


@dataclass(frozen=True)
class Prediction:
    """The ``k`` most probable classes of one image, most probable first."""

    indices: list[int]
    names: list[str]
    probabilities: list[float]

    @property
    def top(self) -> tuple[str, float]:
        return self.names[0], self.probabilities[0]


def top_k(logits: Tensor, class_names: list[str], k: int = 5) -> Prediction:
    """The ``k`` most probable classes of logits ``(1, classes)`` (softmax probabilities)."""
    probabilities = logits.detach()[0].float().softmax(-1).cpu()
    top = probabilities.topk(min(k, len(probabilities)))
    indices = top.indices.tolist()
    return Prediction(indices, [class_names[i] for i in indices], top.values.tolist())


@torch.no_grad()
def predict(model: TokenFusionModel, x: Tensor, class_names: list[str], k: int = 5) -> Prediction:
    """Softmax probabilities of ``model`` on one normalised image ``x`` ``(1, 3, H, W)``, top ``k``."""
    model.eval()
    return top_k(model(x.to(device_of(model))), class_names, k)
