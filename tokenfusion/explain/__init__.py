"""Seeing inside token-fusion models: attention, rollout, fusion weights, CAMs, attributions, scores.

``Explainer(model, x)`` is one explanation session for one normalised image: it runs the traced
forward once and serves every method from it (``.explain(method, layer, target, kind=...)``, or
``.answer(Request(...))``; the prediction, fusion weights, ablation, faithfulness curves, the
randomisation test). ``explain(model, x, method, ...)`` is the one-call form;
``available_methods(model)`` says which methods, layers and token kinds apply to a model (read from
``model.structure``). Every method is one spec in one table (:data:`METHODS`, ``explain/registry.py``).
"""
from ._utils import ExplainError
from .agreement import agreement_matrices
from .anatomy import sequence_table
from .backends import load_backends
from .cost import (
    ForwardCost, Passes, Progress, estimate_seconds, faithfulness_seconds, forward_passes, measure_forward,
    randomisation_seconds,
)
from .fusion import BranchAblation, FusionWeights, branch_ablation, fusion_weights, fusion_weights_of, gates
from .mask_scores import MaskScores, mask_scores
from .metrics import (
    Curve, Randomisation, centre_prior, deletion_curve, insertion_curve, mask_energy, pearson, pointing_game,
    pointing_tolerance, randomisation_check, spearman,
)
from .prediction import Prediction, predict
from .registry import METHODS, MethodInfo, available_methods
from .result import Explanation
from .scores import MapScore, best_map, score_of, scores_for
from .session import Explainer, Faithfulness, Inside, WhatIf, explain
from .spec import Method, Request

__all__ = [
    "METHODS", "BranchAblation", "Curve", "ExplainError", "Explainer", "Explanation", "Faithfulness", "ForwardCost",
    "FusionWeights", "Inside", "MapScore", "MaskScores", "Method", "MethodInfo", "Passes", "Prediction", "Progress",
    "Randomisation", "Request", "WhatIf", "agreement_matrices", "available_methods", "best_map", "branch_ablation",
    "centre_prior", "deletion_curve", "estimate_seconds", "explain", "faithfulness_seconds", "forward_passes",
    "fusion_weights", "fusion_weights_of", "gates", "insertion_curve", "load_backends", "mask_energy", "mask_scores",
    "measure_forward", "pearson", "pointing_game", "pointing_tolerance", "predict", "randomisation_check",
    "randomisation_seconds", "score_of", "scores_for", "sequence_table", "spearman",
]
