"""Plotly figures (and Graphviz diagrams) of models and explanations, shared by the app and notebooks.

Every builder takes results of :mod:`tokenfusion.models` / :mod:`tokenfusion.explain` and returns
a ``plotly.graph_objects.Figure`` (or DOT text); none of them computes on the model or draws on
screen by itself.
"""
from .agreement import agreement_figure
from .curves import deletion_insertion_figure, randomisation_figure
from .diagrams import STRATEGY_SUMMARIES, strategy_diagram
from .fusion import ablation_figure, attention_share_figure, gates_figure, head_share_figure
from .overlay import grid_figure, overlay_figure, overlays_figure, pixels_figure, token_grid_figure, token_picker_figure
from .predictions import topk_figure
from .style import KIND_COLOURS, KIND_LABELS
from .training import training_figure

__all__ = [
    "KIND_COLOURS", "KIND_LABELS", "STRATEGY_SUMMARIES", "ablation_figure", "agreement_figure",
    "attention_share_figure", "deletion_insertion_figure", "gates_figure", "grid_figure", "head_share_figure",
    "overlay_figure", "overlays_figure", "pixels_figure", "randomisation_figure", "strategy_diagram",
    "token_grid_figure", "token_picker_figure", "topk_figure", "training_figure",
]
