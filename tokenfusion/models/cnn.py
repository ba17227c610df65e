"""``cnn``: the CNN-only baseline."""
from __future__ import annotations

from torch import Tensor

from .base import TokenFusionModel
from .config import ModelConfig
from .structure import ModelStructure, stage_targets
from .trace import Trace
from .trunks import build_trunk

__all__ = ["CNN"]


class CNN(TokenFusionModel):
    """The convolutional trunk, global average pooling of its last stage, a linear head."""

    def __init__(self, config: ModelConfig) -> None:
        trunk = build_trunk(config.trunk, config.tiny_trunk_channels)
        super().__init__(config, trunk.channels[-1])
        self.trunk = trunk
        self._init_weights()

    @property
    def structure(self) -> ModelStructure:
        stages = tuple(f"trunk.{name}" for name in self.trunk.stage_names)
        return ModelStructure((), {}, stages, (), stage_targets(stages))

    def forward_features(self, x: Tensor, trace: Trace | None = None) -> Tensor:
        features = self.trunk(x)
        if trace is not None:
            trace.cnn_features = features
        return features[-1].mean(dim=(2, 3))
