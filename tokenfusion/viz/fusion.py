"""How much a fusion model uses each kind of token: attention shares, gates, branch ablation."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..explain import BranchAblation, FusionWeights
from ..interventions import describe
from .style import KIND_COLOURS, KIND_LABELS, as_array, compact

__all__ = ["attention_share_figure", "head_share_figure", "gates_figure", "ablation_figure"]

#: Most layer names written under a bar chart; with more layers every n-th is written, slanted.
MAX_LAYER_LABELS = 8


def _layer_ticks(fig: go.Figure, layers: list[str], **where: int) -> None:
    """Layer names under the bars that do not overlap: slanted beyond a few layers, and thinned to
    at most :data:`MAX_LAYER_LABELS` (the last layer always written)."""
    if len(layers) <= 4:
        return
    step = -(-len(layers) // MAX_LAYER_LABELS)
    shown = layers[::-1][::step][::-1]
    fig.update_xaxes(tickangle=-40, tickmode="array", tickvals=shown, ticktext=shown, **where)


def attention_share_figure(weights: FusionWeights, *, query: str = "cls", height: int = 260) -> go.Figure:
    """Stacked bars, one per layer: the share of attention that the class token (``query="cls"``)
    or the average query (``"mean"``) puts on class, CNN and patch tokens, averaged over heads."""
    shares = weights.layer_shares(query)
    fig = go.Figure()
    for kind in ("cnn", "patch", "cls"):
        if kind in shares:
            values = as_array(shares[kind])[0]  # (L,)
            fig.add_trace(go.Bar(
                x=weights.layers, y=values, name=KIND_LABELS[kind], marker_color=KIND_COLOURS[kind],
                hovertemplate=f"%{{x}}<br>{KIND_LABELS[kind]}: %{{y:.1%}}<extra></extra>",
            ))
    fig.update_layout(barmode="stack", legend=dict(orientation="h", y=-0.35 if len(weights.layers) > 4 else -0.2))
    fig.update_yaxes(range=[0, 1], tickformat=".0%", title="share of attention")
    _layer_ticks(fig, list(weights.layers))
    return compact(fig, height)


def head_share_figure(weights: FusionWeights, *, kind: str = "cnn", query: str = "cls", height: int = 260) -> go.Figure:
    """Heatmap, layers x heads: the share of attention that the class token (``query="cls"``) or the
    average query (``"mean"``) puts on ``kind`` tokens, per head; titled with what it shows."""
    values = as_array(weights.shares(query)[kind])[0]  # (L, heads)
    who = "the class token" if query == "cls" else "all queries (mean)"
    fig = go.Figure(go.Heatmap(
        z=values, x=[f"head {h}" for h in range(values.shape[1])], y=weights.layers, zmin=0, zmax=1,
        colorscale=[[0, "#FFFFFF"], [1, KIND_COLOURS[kind]]], text=[[f"{v:.0%}" for v in row] for row in values],
        texttemplate="%{text}", hovertemplate=f"%{{y}}, %{{x}}<br>on {KIND_LABELS[kind]}: %{{z:.1%}}<extra></extra>",
        colorbar=dict(thickness=10, tickformat=".0%"),
    ))
    fig.update_yaxes(autorange="reversed")
    return compact(fig, height, title=f"Share of attention on {KIND_LABELS[kind]} per head, from {who}")


def gates_figure(weights: FusionWeights, layers: list[str], *, height: int = 260) -> go.Figure:
    """``layerwise``: the learned gate ``tanh(g_l)`` of each cross-attention (left) and, for this
    image, the norm of the CNN update it injects over the norm of the patch stream (right). When
    every gate is 0 (a freshly initialised model, ``g = 0``: no CNN enters yet), the figure says so
    instead of showing empty bars."""
    if weights.gates is None or weights.update_ratio is None:
        raise ValueError("These fusion weights have no gates; only 'layerwise' models do")
    titles = ["gate tanh(g) per layer", "CNN update / patch stream (this image)"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles)
    colour = KIND_COLOURS["cnn"]
    fig.add_trace(go.Bar(x=layers, y=as_array(weights.gates), marker_color=colour, showlegend=False,
                         hovertemplate="%{x}: gate %{y:.3f}<extra></extra>"), 1, 1)
    fig.add_trace(go.Bar(x=layers, y=as_array(weights.update_ratio)[0], marker_color=colour, showlegend=False,
                         hovertemplate="%{x}: %{y:.3f}<extra></extra>"), 1, 2)
    fig.update_yaxes(range=[-1, 1], row=1, col=1)
    for col in (1, 2):
        _layer_ticks(fig, layers, row=1, col=col)
    if not as_array(weights.gates).any():
        fig.add_annotation(text="Every gate is 0, as at initialisation (g = 0): no CNN token enters the patch "
                                "stream yet, so both charts are empty. Train the model to see its gates open.",
                           xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, align="center",
                           bgcolor="rgba(255,255,255,0.85)", font=dict(size=12))
    return compact(fig, height)


def ablation_figure(ablation: BranchAblation, class_name: str, *, height: int = 240) -> go.Figure:
    """Bars: the change of the ``class_name`` logit under the ablation's intervention on every CNN token,
    or every patch token (``zero``: without them; negative: the model relied on that kind)."""
    delta = {kind: float(as_array(value)[0]) for kind, value in ablation.delta.items()}
    kinds = list(delta)
    fig = go.Figure(go.Bar(
        x=[describe(k, ablation.how) for k in kinds], y=[delta[k] for k in kinds],
        marker_color=[KIND_COLOURS[k] for k in kinds], text=[f"{delta[k]:+.2f}" for k in kinds],
        textposition="auto", hovertemplate="%{x}<br>logit change %{y:+.3f}<extra></extra>",
    ))
    fig.update_yaxes(title=f"Δ logit of '{class_name}'", zeroline=True)
    return compact(fig, height)
