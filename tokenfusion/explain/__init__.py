"""Seeing inside token-fusion models: attention, rollout, fusion weights, CAMs, attributions, scores.

``explain(model, x, method, layer=None, target=None, **options)`` runs any method on one
normalised image and returns an :class:`Explanation`; ``available_methods(model)`` says which
methods, layers and token kinds apply to a model.
"""
from ._utils import ExplainError
from .attention import attention_map, attention_rollout, cross_attention_map, fuse_heads, rollout_matrix
from .attribution import integrated_gradients, occlusion, smoothgrad
from .cam import CAM_METHODS, TokenReshape, cam
from .fusion import BranchAblation, branch_ablation, fusion_weights, gates, mean_tokens, token_kinds
from .metrics import (
    Curve, Randomisation, auc, deletion_curve, insertion_curve, mask_energy, pearson, pointing_game,
    randomisation_check, spearman,
)
from .registry import MethodInfo, available_methods, explain
from .result import Explanation, to_map

__all__ = [
    "BranchAblation", "CAM_METHODS", "Curve", "ExplainError", "Explanation", "MethodInfo", "Randomisation",
    "TokenReshape", "attention_map", "attention_rollout", "auc", "available_methods", "branch_ablation", "cam",
    "cross_attention_map", "deletion_curve", "explain", "fuse_heads", "fusion_weights", "gates",
    "insertion_curve", "integrated_gradients", "mask_energy", "mean_tokens", "occlusion", "pearson",
    "pointing_game", "randomisation_check", "rollout_matrix", "smoothgrad", "spearman", "to_map", "token_kinds",
]
