"""The CAM methods (Grad-CAM and its family through ``pytorch_grad_cam``), on CNN feature maps and
on token tensors.

This module says what a CAM targets and what it costs; :mod:`~tokenfusion.explain.cam_classes`
runs it, imported with ``pytorch_grad_cam`` by the first CAM computed, so that importing
``tokenfusion.explain`` costs neither. Each CAM method is one :class:`Cam` in the table
(:data:`tokenfusion.explain.registry.METHODS`), naming its pytorch-grad-cam class.

A CAM targets one module. The model declares the modules a CAM can target
(``model.structure.cam_targets``): trunk stages output feature maps ``(B, C, h, w)`` and are used
as they are; token modules (``norm1`` of a block, ``norm_kv`` of a ``layerwise`` cross block)
output ``(B, N, D)``, and :class:`TokenReshape`, built from that layer's layout in the session's
traced forward, lays the tokens of one kind on their grid, ``(B, D, h, w)``, wherever the class
tokens sit. Any other module inside a declared block (the block's own output, ``"blocks.3"``) can
be targeted too, with that block's layout. Prefer ``norm1`` of the last block to the block's
output: the head reads only the class token, so the last block's other outputs get no gradient.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from ..models import CamTarget, ModelStructure, TokenFusionModel, TokenLayout, Trace
from ._utils import ExplainError
from .spec import Method, Passes, Session, Target, Targets

__all__ = ["Cam", "TokenReshape", "TopChannelsCam"]


class TokenReshape:
    """``reshape_transform`` for pytorch-grad-cam: ``(B, N, D)`` tokens -> ``(B, D, h, w)``, the
    ``kind`` tokens of ``layout`` on their grid (class tokens and the other kind dropped)."""

    def __init__(self, layout: TokenLayout, kind: str) -> None:
        layout.grid_span(kind)  # raises if this layout has no grid of that kind
        self.layout, self.kind = layout, kind

    def __call__(self, tokens: Tensor) -> Tensor:
        if tokens.dim() != 3 or tokens.shape[1] != self.layout.num_tokens:
            raise ExplainError(f"Expected tokens (B, {self.layout.num_tokens}, D); got {tuple(tokens.shape)}")
        return self.layout.to_grid(tokens, self.kind)


def _reshape(target: CamTarget, trace: Trace) -> TokenReshape | None:
    if target.source == "feature_map":
        return None
    if target.source == "cross_keys":
        return TokenReshape(trace.cross_attention[target.layout_of].key_layout, target.kind)
    return TokenReshape(trace.layouts[target.layout_of], target.kind)


class Cam(Method):
    """A CAM of the pytorch-grad-cam class named ``backend`` (in ``pytorch_grad_cam`` or
    :mod:`~tokenfusion.explain.cam_classes`). ``gradients``: its weights come from a backward of
    the target (one forward, one backward); otherwise one forward (EigenCAM), or, with
    ``per_channel`` set, one masked image per channel of the layer plus ``per_channel`` more, in
    batches of ``batch_size`` (ScoreCAM, AblationCAM). ``grid`` is the CAM on the layer's grid
    before ReLU."""

    family = "cam"
    options: Mapping[str, Any] = {"batch_size": 16, "eigen_smooth": False}

    def __init__(self, name: str, backend: str, *, gradients: bool = True, per_channel: int | None = None) -> None:
        self.name, self.backend, self.gradients = name, backend, gradients  # type: ignore[misc]
        self.extra = per_channel
        self.per_channel = per_channel is not None  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.backend!r})"

    def targets(self, structure: ModelStructure) -> Targets | None:
        if not structure.cam_targets:
            return None
        default = structure.default_cam_target()
        return Targets(tuple((t.layer, t.kind) for t in structure.cam_targets), (default.layer, default.kind))

    def resolve(self, structure: ModelStructure, targets: Targets, layer: str | None, kind: str | None) -> Target:
        """As :meth:`Method.resolve`, and also any module inside a declared block (``"blocks.3"``)."""
        if layer is not None and all(t[0] != layer for t in targets.pairs):
            inside = [t.kind for t in structure.cam_targets_at(layer) if kind in (None, t.kind)]
            if len(inside) > 1:
                raise ExplainError(f"Layer {layer!r} holds {inside} tokens: pass kind= one of them")
            if inside:
                return layer, inside[0]
        return super().resolve(structure, targets, layer, kind)

    def scored(self, channels: int, options: Mapping[str, Any]) -> int:
        """The channels that get one masked image each, of the layer's ``channels``."""
        return channels

    def passes(self, model: TokenFusionModel, channels: Mapping[str, int], layer: str | None, kind: str | None,
               options: Mapping[str, Any]) -> Passes:
        if self.extra is None:
            return Passes(1, int(self.gradients))
        return Passes(self.scored(channels[layer], options) + self.extra, 0, True)  # type: ignore[index]

    def grid(self, session: Session, layer: str | None, kind: str | None, target: int,
             options: Mapping[str, Any]) -> tuple[Tensor, str | None]:
        from .cam_classes import raw_cam  # pytorch_grad_cam loads with the first CAM

        model = session.model
        chosen = next(t for t in model.structure.cam_targets_at(layer) if t.kind == kind)  # type: ignore[arg-type]
        grid = raw_cam(model, model.get_submodule(layer), session.x, self.backend, target,  # type: ignore[arg-type]
                       _reshape(chosen, session.trace), quiet=self.per_channel, **options)
        model.zero_grad(set_to_none=True)
        return grid, layer


class TopChannelsCam(Cam):
    """ScoreCAM over the ``channels`` channels of largest spatial variance only: one masked image
    each instead of one per channel (33 instead of 1025 at ResNet-50's layer3 with the default 32)."""

    options = {**Cam.options, "channels": 32}

    def scored(self, channels: int, options: Mapping[str, Any]) -> int:
        return min(channels, _checked(options["channels"]))

    def grid(self, session: Session, layer: str | None, kind: str | None, target: int,
             options: Mapping[str, Any]) -> tuple[Tensor, str | None]:
        _checked(options["channels"])
        return super().grid(session, layer, kind, target, options)


def _checked(channels: int) -> int:
    if int(channels) < 1:
        raise ExplainError(f"channels must be at least 1; got {channels}")
    return int(channels)
