"""Grad-CAM and its family through ``pytorch_grad_cam``, on CNN feature maps and on token tensors.

This module says what a CAM targets; :mod:`~tokenfusion.explain.cam_classes` runs it, imported
with ``pytorch_grad_cam`` by the first CAM computed, so that importing ``tokenfusion.explain``
costs neither.

A CAM targets one module. The model declares the modules a CAM can target
(``model.structure.cam_targets``): trunk stages output feature maps ``(B, C, h, w)`` and are used
as they are; token modules (``norm1`` of a block, ``norm_kv`` of a ``layerwise`` cross block)
output ``(B, N, D)``, and :class:`TokenReshape`, built from that layer's layout in one traced
forward on the input, lays the tokens of one kind on their grid, ``(B, D, h, w)``, wherever the
class tokens sit. Any other module inside a declared block (the block's own output, ``"blocks.3"``)
can be targeted too, with that block's layout. Prefer ``norm1`` of the last block to the block's
output: the head reads only the class token, so the last block's other outputs get no gradient.

``scorecam_topk`` is ScoreCAM over the ``channels`` channels of largest spatial variance only (one masked forward
each instead of one per channel: 33 instead of 1025 at ResNet-50's layer3 with the default 32).
"""
from __future__ import annotations

import time

from torch import Tensor

from ..models import CamTarget, TokenFusionModel, TokenLayout, Trace
from ._utils import ExplainError, as_batch, resolve_target, traced
from .result import Explanation

__all__ = ["CAM_METHODS", "PER_CHANNEL_CAMS", "TOP_CHANNELS", "TokenReshape", "cam"]

#: Channels ``scorecam_topk`` scores by default.
TOP_CHANNELS = 32

#: The CAM methods, by name; :mod:`~tokenfusion.explain.cam_classes` holds the class of each.
CAM_METHODS: tuple[str, ...] = (
    "gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "eigengradcam", "gradcam-elementwise",
    "scorecam", "scorecam_topk", "ablationcam",
)
#: The CAMs that run one masked forward per channel of their layer (``scorecam_topk``: per scored
#: channel), in batches.
PER_CHANNEL_CAMS: tuple[str, ...] = ("scorecam", "scorecam_topk", "ablationcam")


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


def _target(model: TokenFusionModel, layer: str | None, kind: str | None) -> CamTarget:
    """The model's CAM target for ``layer`` and ``kind`` (its default when ``layer`` is None)."""
    structure = model.structure
    targets = structure.cam_targets
    if layer is None:
        try:
            return structure.default_cam_target(kind)
        except KeyError as e:
            raise ExplainError(f"{model.config.arch!r} has no layer with {kind!r} features. "
                               f"Expected one of {[(t.layer, t.kind) for t in targets]}") from e
    matches = structure.cam_targets_at(layer)
    if not matches:
        raise ExplainError(f"{type(model).__name__} has no token or feature-map module {layer!r}. "
                           f"Layers: {[(t.layer, t.kind) for t in targets]}")
    chosen = [t for t in matches if kind is None or t.kind == kind]
    if not chosen:
        raise ExplainError(f"Layer {layer!r} has no {kind!r} tokens; it holds {[t.kind for t in matches]}")
    if len(chosen) > 1:
        raise ExplainError(f"Layer {layer!r} holds {[t.kind for t in chosen]} tokens: pass kind= one of them")
    return chosen[0]


def _reshape(target: CamTarget, trace: Trace) -> TokenReshape | None:
    if target.source == "feature_map":
        return None
    if target.source == "cross_keys":
        return TokenReshape(trace.cross_attention[target.layout_of].key_layout, target.kind)
    return TokenReshape(trace.layouts[target.layout_of], target.kind)


def cam(
    model: TokenFusionModel, x: Tensor, method: str = "gradcam", layer: str | None = None, target: int | None = None,
    kind: str | None = None, *, batch_size: int = 16, eigen_smooth: bool = False, channels: int = TOP_CHANNELS,
    trace: Trace | None = None, logits: Tensor | None = None,
) -> Explanation:
    """A CAM of ``method`` (one of :data:`CAM_METHODS`) for the normalised image ``x`` ``(1, 3, H, W)``.

    ``layer`` is a module name (default: ``model.structure.default_cam_target(kind)``); ``kind`` picks the tokens of
    a token layer (needed where a layer holds both kinds). ``target`` defaults to the predicted
    class. ``batch_size`` bounds the forward batches of ScoreCAM and AblationCAM (whose progress
    bars are silenced); ``channels`` is the number of channels ``scorecam_topk`` scores. ``grid``
    is the CAM on the layer's grid before ReLU; ``map`` clips, upsamples and normalises it.
    ``trace``/``logits`` of a traced forward on ``x`` may be passed to save one forward.
    """
    from .cam_classes import raw_cam  # pytorch_grad_cam loads with the first CAM, outside its seconds

    start = time.perf_counter()
    if method not in CAM_METHODS:
        raise ExplainError(f"Unknown CAM method {method!r}. Expected one of {list(CAM_METHODS)}")
    if channels < 1:
        raise ExplainError(f"channels must be at least 1; got {channels}")
    x = as_batch(x)
    if trace is None or logits is None:
        logits, trace = traced(model, x)
    target = resolve_target(logits, target)
    chosen = _target(model, layer, kind)
    layer, kind = chosen.layer, chosen.kind
    reshape = _reshape(chosen, trace)
    grid = raw_cam(model, model.get_submodule(layer), x, method, target, reshape, batch_size=batch_size,
                   eigen_smooth=eigen_smooth, channels=channels)
    model.zero_grad(set_to_none=True)
    return Explanation.from_grid(
        grid, tuple(x.shape[-2:]), method=method, layer=layer, target=target,
        seconds=time.perf_counter() - start, kind=kind,
    )
