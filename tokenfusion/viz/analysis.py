"""Figures of an analysis over a data set (the plain numbers of ``tokenfusion.analysis``'s JSON)."""
from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import KIND_COLOURS, KIND_LABELS, compact

__all__ = ["ablation_curves_figure", "attention_distance_figure", "cka_figure", "fusion_heads_figure",
           "fusion_share_figure", "gates_over_set_figure", "uniform_reference"]

_CUE_DASH = {"top1": "solid", "shape": "dash", "texture": "dot"}
_KEY_SYMBOL = {"cnn": "circle", "patch": "diamond"}


def ablation_curves_figure(ablation: dict[str, Any], mode: str = "mean", *, height: int = 320) -> go.Figure:
    """Top-1 (solid) and each cue alone (dashed: shape, dotted: texture) against the place ``k`` from
    which one kind of token is removed; ``k = L + 1`` is the intact model. ``ablation``: one model's
    ``"ablation"`` entry."""
    fig = go.Figure()
    for kind, entry in ablation.items():
        curve = entry[mode]
        places = [*entry["sites"], "none"]
        for measure in (m for m in _CUE_DASH if m in curve):
            fig.add_trace(go.Scatter(
                x=list(range(1, len(places) + 1)), y=curve[measure], customdata=places, mode="lines+markers",
                name=f"{KIND_LABELS[kind]} removed: {measure}", line=dict(color=KIND_COLOURS[kind],
                                                                          dash=_CUE_DASH[measure]),
                hovertemplate=f"{measure}: %{{y:.1f}}%<br>from %{{customdata}} on<extra></extra>",
            ))
    fig.update_xaxes(title="removed from place k on (last: nothing removed)", dtick=1)
    fig.update_yaxes(title="accuracy (%)", range=[0, 101])
    return compact(fig, height)


def uniform_reference(model: dict[str, Any]) -> dict[str, Any]:
    """What :func:`attention_distance_figure` draws as uniform attention for one model's entry of an
    ``analysis.json``: its per-layer references, or one per stream from files that predate them."""
    return model.get("attention_distance_uniform_layers") or model["attention_distance_uniform"]


def attention_distance_figure(distance: dict[str, Any], uniform: dict[str, Any], *, height: int = 320) -> go.Figure:
    """Mean attention distance (pixels), one dot per head, coloured by query kind, shaped by key kind,
    for every layer of every stream; a dotted line per stream and pair: uniform attention over the same
    keys. ``uniform``: one model's ``attention_distance_uniform_layers`` (``{stream: {layer: {pair: px}}}``,
    a reference per layer: cross-attention layers may read different grids), or, from older files,
    ``attention_distance_uniform`` (``{stream: {pair: px}}``, one per stream)."""
    fig = go.Figure()
    for stream, layers in distance.items():
        names = list(layers)
        references = uniform[stream]
        per_layer = all(isinstance(references.get(layer), dict) for layer in names)
        for pair in layers[names[0]]:
            query, key = pair.split("->")
            xs = [layer for layer in names for _ in layers[layer][pair]]
            ys = [d for layer in names for d in layers[layer][pair]]
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="markers", name=f"{stream}: {pair}",
                marker=dict(color=KIND_COLOURS[query], symbol=_KEY_SYMBOL[key], size=8, opacity=0.8),
                hovertemplate=f"{pair}<br>%{{x}}: %{{y:.1f}} px<extra></extra>",
            ))
            line_x, line_y = (names, [references[layer][pair] for layer in names]) if per_layer else \
                ([names[0], names[-1]], [references[pair]] * 2)
            fig.add_trace(go.Scatter(x=line_x, y=line_y, mode="lines", line=dict(color=KIND_COLOURS[query], dash="dot",
                                                                                 width=1, shape="hvh"),
                                     showlegend=False,
                                     hovertemplate=f"uniform attention, {pair}: %{{y:.1f}} px<extra></extra>"))
    fig.update_xaxes(title="layer")
    fig.update_yaxes(title="mean attention distance (px)", rangemode="tozero")
    return compact(fig, height)


def cka_figure(comparison: dict[str, Any], *, height: int = 320) -> go.Figure:
    """One block of the CKA table: rows the first model's features, columns the second's; the hover
    says what each pair compares (``tokens`` or each image's ``mean`` token) when the block records it."""
    fig = go.Figure(go.Heatmap(
        z=comparison["cka"], x=[c.split("/", 1)[1] for c in comparison["cols"]],
        y=[r.split("/", 1)[1] for r in comparison["rows"]], zmin=0, zmax=1, colorscale="Viridis",
        customdata=comparison.get("representation"),
        hovertemplate="%{y} vs %{x}<br>CKA %{z:.2f}" + (" on %{customdata}" if "representation" in comparison else "")
        + "<extra></extra>",
    ))
    fig.update_xaxes(title=comparison["b"])
    fig.update_yaxes(title=comparison["a"], autorange="reversed")
    return compact(fig, height, title=f"CKA: {comparison['a']} vs {comparison['b']}")


def fusion_share_figure(fusion: dict[str, Any], *, height: int = 300) -> go.Figure:
    """The class token's attention share on each kind per layer: mean over images and heads, bars of
    one standard deviation over images (mean over heads)."""
    fig = go.Figure()
    for kind in (k for k in ("cnn", "patch") if k in fusion):
        mean = [sum(row) / len(row) for row in fusion[kind]["cls_share_mean"]]
        spread = [sum(row) / len(row) for row in fusion[kind]["cls_share_std"]]
        fig.add_trace(go.Bar(x=fusion["layers"], y=mean, name=KIND_LABELS[kind], marker_color=KIND_COLOURS[kind],
                             error_y=dict(type="data", array=spread)))
    fig.update_xaxes(title="layer")
    fig.update_yaxes(title="class token's attention share", range=[0, 1])
    return compact(fig, height)


def fusion_heads_figure(fusion: dict[str, Any], *, height: int = 300) -> go.Figure:
    """The class token's attention share on each kind, one dot per head (mean over images) with a
    bar of one standard deviation over images; a layer's heads side by side, CNN tokens left of patch
    tokens."""
    fig = go.Figure()
    layers = fusion["layers"]
    kinds = [k for k in ("cnn", "patch") if k in fusion]
    for side, kind in enumerate(kinds):
        mean, spread = fusion[kind]["cls_share_mean"], fusion[kind]["cls_share_std"]  # (L, heads)
        heads = len(mean[0])
        shift = (side - (len(kinds) - 1) / 2) * 0.4
        xs = [i + shift + (h - (heads - 1) / 2) * 0.3 / heads for i in range(len(layers)) for h in range(heads)]
        spreads = [v for row in spread for v in row]
        fig.add_trace(go.Scatter(
            x=xs, y=[v for row in mean for v in row], mode="markers", name=KIND_LABELS[kind],
            marker=dict(color=KIND_COLOURS[kind], size=7), error_y=dict(type="data", array=spreads, thickness=1, width=0),
            customdata=[[layer, h, spreads[i * heads + h]] for i, layer in enumerate(layers) for h in range(heads)],
            hovertemplate="%{customdata[0]}, head %{customdata[1]}<br>mean %{y:.1%} ± %{customdata[2]:.1%}<extra></extra>",
        ))
    fig.update_xaxes(title="layer (one dot per head)", tickmode="array", tickvals=list(range(len(layers))),
                     ticktext=layers)
    fig.update_yaxes(title="class token's attention share", range=[-0.02, 1.02])
    return compact(fig, height)


def gates_over_set_figure(cross: dict[str, Any], *, height: int = 260) -> go.Figure:
    """Gated cross-attention (``layerwise``): the learned gate ``tanh(g)`` of each entry (left) and
    the norm of the CNN update it injects over the norm of the patch stream, mean over images with a
    bar of one standard deviation (right). ``cross``: the ``"cross"`` entry of the fusion weights."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["gate tanh(g)", "CNN update / patch stream"])
    colour = KIND_COLOURS["cnn"]
    layers = cross["layers"]
    fig.add_trace(go.Bar(x=layers, y=cross["gates"], marker_color=colour, showlegend=False,
                         hovertemplate="%{x}: gate %{y:.3f}<extra></extra>"), 1, 1)
    fig.add_trace(go.Bar(x=layers, y=cross["update_ratio_mean"], marker_color=colour, showlegend=False,
                         error_y=dict(type="data", array=cross["update_ratio_std"]),
                         hovertemplate="%{x}: %{y:.3f}<extra></extra>"), 1, 2)
    fig.update_yaxes(range=[-1, 1], row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    return compact(fig, height)
