"""Tokens, transformer blocks and the five architectures: ``create(arch, size, **overrides)``."""
from .adapters import AdaptedConfig, AdaptedModel
from .base import TokenFusionModel
from .config import ARCHITECTURES, KIND_DROP_KINDS, POSITION_EMBEDDINGS, SIZES, WEIGHT_INITS, ModelConfig, make_config
from .layout import TokenLayout, TokenSpan
from .registry import build, create, list_models
from .summary import count_flops, count_parameters
from .structure import CamTarget, CrossEntry, ModelStructure, Stream
from .trace import CrossAttentionTrace, StreamTrace, Trace

__all__ = [
    "AdaptedConfig", "AdaptedModel", "ARCHITECTURES", "KIND_DROP_KINDS", "POSITION_EMBEDDINGS", "SIZES", "WEIGHT_INITS", "ModelConfig", "TokenFusionModel", "TokenLayout", "TokenSpan", "Trace",
    "CamTarget", "CrossAttentionTrace", "CrossEntry", "ModelStructure", "Stream", "StreamTrace", "build", "count_flops", "count_parameters", "create",
    "list_models", "make_config",
]
