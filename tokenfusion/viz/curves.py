"""Faithfulness scores as curves: deletion / insertion, and the randomisation test."""
from __future__ import annotations

import plotly.graph_objects as go

from ..explain import Curve, Randomisation
from .style import as_array, compact

__all__ = ["deletion_insertion_figure", "randomisation_figure"]


def deletion_insertion_figure(deletion: Curve, insertion: Curve, class_name: str, *, height: int = 300) -> go.Figure:
    """The probability of ``class_name`` as the most salient pixels are deleted (replaced by the
    baseline) or inserted (into the baseline); each legend entry gives its area under the curve."""
    fig = go.Figure()
    for name, curve, colour in (("deletion", deletion, "#C0392B"), ("insertion", insertion, "#2E9D57")):
        fig.add_trace(go.Scatter(
            x=as_array(curve.fractions), y=as_array(curve.scores), mode="lines+markers", line_color=colour,
            name=f"{name} (AUC {curve.auc:.3f})",
            hovertemplate=f"{name}: %{{x:.0%}} of pixels<br>p = %{{y:.3f}}<extra></extra>",
        ))
    fig.update_xaxes(title="fraction of pixels, most salient first", tickformat=".0%")
    fig.update_yaxes(title=f"p('{class_name}')", range=[0, 1.02])
    fig.update_layout(legend=dict(orientation="h", y=1.12))
    return compact(fig, height)


def randomisation_figure(result: Randomisation, *, height: int = 300) -> go.Figure:
    """Spearman correlation between the trained model's map and the map after re-initialising the
    model from the head down to each unit; a faithful method falls towards 0."""
    steps = list(range(1, len(result.units) + 1))
    fig = go.Figure(go.Scatter(
        x=steps, y=result.correlations, mode="lines+markers", customdata=result.units,
        hovertemplate="randomised down to %{customdata}<br>ρ = %{y:.3f}<extra></extra>",
    ))
    fig.add_hline(y=0, line_dash="dot", line_color="#888")
    fig.update_xaxes(title="units re-initialised, head first", tickvals=steps,
                     ticktext=[u if len(u) < 18 else u[-17:] for u in result.units], tickangle=-40)
    fig.update_yaxes(title="rank correlation with trained map", range=[-1, 1.05])
    return compact(fig, height)
