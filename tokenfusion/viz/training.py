"""Training curves from a checkpoint's per-epoch history."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import compact

__all__ = ["training_figure"]

_PANELS = (
    ("loss", (("train_loss", "train", "#5F6B7A"), ("val_loss", "validation", "#E8743B"))),
    ("validation accuracy (%)", (("top1", "top-1", "#3B7DD8"), ("top5", "top-5", "#9AA0A6"))),
    ("learning rate", (("lr", "lr", "#2E9D57"),)),
)


def training_figure(history: Sequence[dict[str, Any]], *, height: int = 280) -> go.Figure:
    """Loss (train and validation), validation top-1/top-5 and learning rate per epoch; a key
    missing from the history is left out."""
    fig = make_subplots(rows=1, cols=len(_PANELS), subplot_titles=[title for title, _ in _PANELS])
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    for col, (_, series) in enumerate(_PANELS, start=1):
        for key, name, colour in series:
            values = [row.get(key) for row in history]
            if any(v is not None for v in values):
                fig.add_trace(go.Scatter(x=epochs, y=values, name=name, mode="lines+markers", line_color=colour,
                                         hovertemplate=f"epoch %{{x}}<br>{name}: %{{y:.4g}}<extra></extra>"), 1, col)
    fig.update_xaxes(title="epoch", dtick=1 if len(epochs) <= 12 else None)
    fig.update_layout(legend=dict(orientation="h", y=-0.3))
    return compact(fig, height)
