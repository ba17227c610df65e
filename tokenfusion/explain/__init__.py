"""Seeing inside token-fusion models: attention, rollout, fusion weights, CAMs, attributions, scores.

``Explainer(model, x)`` is one explanation session for one normalised image: it runs the traced
forward once and serves every method from it (``.explain(method, layer, target, kind=...)``, the
prediction, fusion weights, ablation, faithfulness curves, the randomisation test).
``explain(model, x, method, ...)`` is the one-call form; ``available_methods(model)`` says which
methods, layers and token kinds apply to a model (read from ``model.structure``).
"""
from ._utils import ExplainError
from .agreement import agreement_matrices, top_fraction_iou
from .anatomy import Anatomy, anatomy, rollout_steps, sequence_table, strongest_channels
from .attention import attention_map, attention_rollout, cross_attention_map, fuse_heads, rollout_matrix
from .attribution import integrated_gradients, occlusion, smoothgrad
from .backends import load_backends
from .cam import CAM_METHODS, TOP_CHANNELS, TokenReshape, cam
from .cost import (
    ForwardCost, Passes, Progress, estimate_seconds, faithfulness_seconds, forward_passes, measure_forward,
    randomisation_seconds, reporting,
)
from .fusion import BranchAblation, FusionWeights, branch_ablation, fusion_weights, fusion_weights_of, gates
from .mask_scores import MaskScores, mask_scores
from .metrics import (
    Curve, Randomisation, auc, centre_prior, deletion_curve, insertion_curve, mask_energy, pearson, pointing_game,
    pointing_tolerance, randomisation_check, spearman,
)
from .prediction import Prediction, predict, top_k
from .registry import MethodInfo, available_methods
from .result import Explanation, is_blank, to_map
from .scores import MapScore, best_map, score_of, scores_for
from .session import Explainer, Faithfulness, Inside, explain

__all__ = [
    "Anatomy", "BranchAblation", "CAM_METHODS", "Curve", "ExplainError", "Explainer", "Explanation", "Faithfulness",
    "ForwardCost", "FusionWeights", "Inside", "MapScore", "MaskScores", "MethodInfo", "Passes", "Prediction",
    "Progress", "Randomisation", "TOP_CHANNELS", "TokenReshape", "agreement_matrices", "anatomy", "attention_map",
    "attention_rollout", "auc", "available_methods", "best_map", "branch_ablation", "cam", "centre_prior",
    "cross_attention_map",
    "deletion_curve", "estimate_seconds", "explain", "faithfulness_seconds", "forward_passes", "fuse_heads",
    "fusion_weights", "fusion_weights_of", "gates", "insertion_curve", "integrated_gradients", "is_blank",
    "load_backends", "mask_energy", "mask_scores", "measure_forward", "occlusion", "pearson",
    "pointing_game", "pointing_tolerance", "predict", "randomisation_check", "randomisation_seconds", "reporting", "rollout_matrix",
    "rollout_steps", "score_of", "scores_for", "sequence_table", "smoothgrad", "spearman", "strongest_channels",
    "to_map", "top_fraction_iou", "top_k",
]
