"""Plotly figures (and Graphviz diagrams) of models and explanations, shared by the app and notebooks.

Every builder takes results of :mod:`tokenfusion.models` / :mod:`tokenfusion.explain` and returns
a ``plotly.graph_objects.Figure`` (or DOT text); none of them draws on screen by itself.
"""
from .agreement import agreement_figure, agreement_matrices, top_fraction_iou
from .anatomy import Anatomy, anatomy, rollout_steps, sequence_table
from .curves import deletion_insertion_figure, randomisation_figure
from .diagrams import STRATEGY_SUMMARIES, strategy_diagram
from .fusion import ablation_figure, attention_share_figure, gates_figure, head_share_figure
from .image import MaskScores, mask_scores, mask_view, model_view
from .overlay import grid_figure, is_blank, overlay_figure, overlays_figure, pixels_figure, token_grid_figure
from .predictions import Prediction, predict, top_k, topk_figure
from .style import KIND_COLOURS, KIND_LABELS
from .training import training_figure

__all__ = [
    "Anatomy", "KIND_COLOURS", "KIND_LABELS", "MaskScores", "Prediction", "STRATEGY_SUMMARIES",
    "ablation_figure", "agreement_figure", "agreement_matrices", "anatomy", "attention_share_figure",
    "deletion_insertion_figure", "gates_figure", "grid_figure", "head_share_figure", "is_blank",
    "mask_scores", "mask_view", "model_view", "overlay_figure", "overlays_figure", "pixels_figure", "predict",
    "randomisation_figure", "rollout_steps", "sequence_table", "strategy_diagram", "token_grid_figure",
    "top_fraction_iou", "top_k", "topk_figure", "training_figure",
]
