"""Measures over a data set, accumulated batch by batch: mean attention distance, minibatch CKA,
ablation curves, fusion weights and the class sensitivity of explanation maps, for every loaded model. ``python -m tokenfusion.analyze`` runs
them from the command line; :func:`analyze` from Python."""
from ..interventions import MODES  # the ablation curves' modes
from .ablation import AblationCurves, Recording
from .attention_distance import AttentionDistance, mean_attention_distance, token_centres
from .class_sensitivity import ClassSensitivity, map_change
from .cka import MinibatchCKA, cka, gram, hsic1, hsic1_tokens
from .data import AnalysisData, AnalysisError, open_data
from .features import layer_features, layer_tokens
from .fusion_stats import FusionStats, Moments
from .runner import DEFAULT_MEASURES, MEASURES, analyze, cka_comparisons

__all__ = [
    "ClassSensitivity", "DEFAULT_MEASURES", "MEASURES", "MODES", "AblationCurves", "AnalysisData", "Recording", "AnalysisError", "AttentionDistance", "FusionStats",
    "MinibatchCKA", "Moments", "analyze", "cka", "cka_comparisons", "gram", "hsic1",
    "hsic1_tokens", "layer_features", "layer_tokens", "map_change", "mean_attention_distance", "open_data", "token_centres",
]
