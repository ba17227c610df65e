"""The top-k chart of a prediction."""
from __future__ import annotations

import plotly.graph_objects as go

from ..explain import Prediction
from .style import compact

__all__ = ["topk_figure"]


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
