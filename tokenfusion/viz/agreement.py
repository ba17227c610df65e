"""The model x model agreement heatmap."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .style import compact

__all__ = ["agreement_figure"]


def agreement_figure(names: list[str], matrix: np.ndarray, *, zmin: float = -1, height: int = 300) -> go.Figure:
    """A symmetric model x model agreement matrix as an annotated heatmap."""
    fig = go.Figure(go.Heatmap(
        z=matrix, x=names, y=names, zmin=zmin, zmax=1, colorscale="RdBu" if zmin < 0 else "Blues",
        text=[[f"{v:.2f}" for v in row] for row in matrix], texttemplate="%{text}",
        hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>", colorbar=dict(thickness=10),
    ))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    return compact(fig, height)
