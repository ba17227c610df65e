"""What a model predicts for one image, and the top-k chart."""
from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go
import torch
from torch import Tensor

from ..models import TokenFusionModel
from .style import compact

__all__ = ["Prediction", "predict", "top_k", "topk_figure"]


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
    return top_k(model(x.to(next(model.parameters()).device)), class_names, k)


def topk_figure(prediction: Prediction, *, true_class: str | None = None, height: int = 220) -> go.Figure:
    """Horizontal bars of the top-k probabilities, most probable on top; the true class, when
    known, in green."""
    colours = ["#2E9D57" if n == true_class else "#5F6B7A" for n in prediction.names]
    fig = go.Figure(go.Bar(
        x=prediction.probabilities, y=prediction.names, orientation="h", marker_color=colours,
        text=[f"{p:.1%}" for p in prediction.probabilities], textposition="auto",
        hovertemplate="%{y}: %{x:.2%}<extra></extra>",
    ))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    return compact(fig, height)
