"""Grad-CAM and its family through ``pytorch_grad_cam``, on CNN feature maps and on token tensors.

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

import io
import time
from contextlib import nullcontext, redirect_stderr
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam import (
    AblationCAM, EigenCAM, EigenGradCAM, GradCAM, GradCAMElementWise, GradCAMPlusPlus, HiResCAM, LayerCAM,
    ScoreCAM, XGradCAM,
)
from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor

from ..models import CamTarget, TokenFusionModel, TokenLayout, Trace
from ._utils import ExplainError, as_batch, resolve_target, traced
from .result import Explanation

__all__ = ["CAM_METHODS", "TOP_CHANNELS", "TokenReshape", "TopChannelsScoreCAM", "ZeroAblationLayerVit", "cam"]

#: Channels ``scorecam_topk`` scores by default.
TOP_CHANNELS = 32


class TopChannelsScoreCAM(ScoreCAM):
    """ScoreCAM that scores only the ``channels`` channels whose activation varies most over the grid
    (variance per image: a flat channel makes a mask that hides nothing), one masked forward each
    instead of one per channel; the others weigh 0. With ``channels`` at least the layer's channels
    it is ScoreCAM. Ranking by variance, as Faster Score-CAM does, beat ranking by mean activation on
    token layers, where LayerNorm centres every channel (measured in bench/results/scorecam_topk.md)."""

    channels: int = TOP_CHANNELS

    def get_cam_weights(self, input_tensor: Tensor, target_layer: Any, targets: list, activations: np.ndarray,
                        grads: Any) -> np.ndarray:
        """``activations`` ``(B, C, h, w)`` -> weights ``(B, C)``, softmax over the scored channels."""
        k = min(self.channels, activations.shape[1])
        order = np.argsort(-activations.var(axis=(2, 3)), axis=1, kind="stable")[:, :k]  # (B, k)
        chosen = np.take_along_axis(activations, order[:, :, None, None], axis=1)
        scored = super().get_cam_weights(input_tensor, target_layer, targets, chosen, grads)  # (B, k)
        weights = np.zeros(activations.shape[:2], dtype=scored.dtype)
        np.put_along_axis(weights, order, scored, axis=1)
        return weights


#: Method name -> pytorch-grad-cam class.
CAM_METHODS: dict[str, type[BaseCAM]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "eigengradcam": EigenGradCAM,
    "gradcam-elementwise": GradCAMElementWise,
    "scorecam": ScoreCAM,
    "scorecam_topk": TopChannelsScoreCAM,
    "ablationcam": AblationCAM,
}


#: The methods that run one masked forward per channel, in batches.
_MANY_PASSES = ("scorecam", "scorecam_topk", "ablationcam")


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


class ZeroAblationLayerVit(AblationLayerVit):
    """Ablation layer for token tensors that sets the ablated channel to 0 in every token.

    pytorch-grad-cam's :class:`AblationLayerVit` writes ``min - 1e7`` when the layer's output is
    not non-negative (always, after a LayerNorm), which saturates the attention that follows;
    zeroing is the ablation of Desai & Ramaswamy (2020).
    """

    def __call__(self, x: Tensor) -> Tensor:
        output = self.activations.transpose(1, -1)  # (B, D, N): channel on axis 1
        for i in range(output.size(0)):
            output[i, self.indices[i], :] = 0
        return output.transpose(1, -1)


class _KeepGrid:
    """Mixin for a pytorch-grad-cam class: keeps the raw CAM of the target layer (before ReLU and
    resizing) in ``self.grids`` and, unlike ``BaseCAM.__exit__``, lets every error through."""

    grids: list[np.ndarray]

    def get_cam_image(self, *args: Any, **kwargs: Any) -> np.ndarray:
        grid = super().get_cam_image(*args, **kwargs)  # type: ignore[misc]
        self.grids.append(grid)
        return grid

    def __exit__(self, exc_type: Any, exc_value: Any, exc_tb: Any) -> bool:
        self.activations_and_grads.release()  # type: ignore[attr-defined]
        return False


_KEEP_GRID: dict[type[BaseCAM], type[BaseCAM]] = {}


def _keep_grid(cls: type[BaseCAM]) -> type[BaseCAM]:
    if cls not in _KEEP_GRID:
        _KEEP_GRID[cls] = type(cls.__name__, (_KeepGrid, cls), {})
    return _KEEP_GRID[cls]


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
    """A CAM of ``method`` (a key of :data:`CAM_METHODS`) for the normalised image ``x`` ``(1, 3, H, W)``.

    ``layer`` is a module name (default: ``model.structure.default_cam_target(kind)``); ``kind`` picks the tokens of
    a token layer (needed where a layer holds both kinds). ``target`` defaults to the predicted
    class. ``batch_size`` bounds the forward batches of ScoreCAM and AblationCAM (whose progress
    bars are silenced); ``channels`` is the number of channels ``scorecam_topk`` scores. ``grid``
    is the CAM on the layer's grid before ReLU; ``map`` clips, upsamples and normalises it.
    ``trace``/``logits`` of a traced forward on ``x`` may be passed to save one forward.
    """
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
    module = model.get_submodule(layer)
    reshape = _reshape(chosen, trace)
    options: dict[str, Any] = {}
    if method == "ablationcam":
        ablation = AblationLayer() if reshape is None else ZeroAblationLayerVit()
        options = dict(batch_size=batch_size, ablation_layer=ablation)
    with _keep_grid(CAM_METHODS[method])(model, [module], reshape_transform=reshape, **options) as explainer:
        explainer.grids = []
        if method in ("scorecam", "scorecam_topk"):
            explainer.batch_size = batch_size
        if method == "scorecam_topk":
            explainer.channels = channels
        quiet = redirect_stderr(io.StringIO()) if method in _MANY_PASSES else nullcontext()
        with quiet:  # their per-batch tqdm bars
            explainer(x, [ClassifierOutputTarget(target)], eigen_smooth=eigen_smooth)
        grid = torch.from_numpy(np.asarray(explainer.grids[-1][0], dtype=np.float32))
    model.zero_grad(set_to_none=True)
    return Explanation.from_grid(
        grid, tuple(x.shape[-2:]), method=method, layer=layer, target=target,
        seconds=time.perf_counter() - start, kind=kind,
    )
