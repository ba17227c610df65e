"""Shared look of every figure: one colour per token kind, compact margins."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from torch import Tensor

__all__ = ["KIND_COLOURS", "KIND_LABELS", "MAP_COLOURSCALE", "OUTLINE_COLOUR", "as_array", "compact"]

#: One colour per kind of token, the same in every chart: CNN orange, patch blue, class grey.
KIND_COLOURS = {"cnn": "#E8743B", "patch": "#3B7DD8", "cls": "#9AA0A6"}
KIND_LABELS = {"cnn": "CNN tokens", "patch": "patch tokens", "cls": "class tokens"}
#: Colour scale of saliency and attention maps laid over images.
MAP_COLOURSCALE = "Inferno"
#: Colour of ground-truth object outlines.
OUTLINE_COLOUR = "#39FF14"


def as_array(values: Tensor | np.ndarray) -> np.ndarray:
    """A tensor (any device, any dtype) or array as a float NumPy array."""
    if isinstance(values, Tensor):
        return values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def compact(fig: go.Figure, height: int, title: str | None = None, width: int | None = None) -> go.Figure:
    """Small margins (room at the top for a title or subplot titles), fixed height, optional title
    and width: the layout every chart of the app uses."""
    top = 36 if title else 30 if fig.layout.annotations else 8
    fig.update_layout(
        height=height, width=width, margin=dict(l=8, r=8, t=top, b=8),
        title=dict(text=title, font=dict(size=14), x=0.02) if title else None,
    )
    return fig
