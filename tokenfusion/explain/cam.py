"""Grad-CAM and its family through ``pytorch_grad_cam``, on CNN feature maps and on token tensors.

A CAM targets one module. Trunk stages (``"trunk.stage2"``, ``"trunk.layer3"``) output feature
maps ``(B, C, h, w)`` and are used as they are. Token modules (a block ``"blocks.3"``, or a
submodule of one such as ``"blocks.3.norm1"``, ``"cross_blocks.1.norm_kv"``) output ``(B, N, D)``;
:class:`TokenReshape`, built from the layout of that layer (one traced forward on the input),
takes the tokens of one kind and lays them on their grid, ``(B, D, h, w)``, wherever the class
tokens sit. Prefer ``norm1`` of the last block to the block's output: the head reads only the
class token, so the last block's other outputs get no gradient.
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

from ..models import TokenFusionModel, TokenLayout, Trace
from ._utils import ExplainError, as_batch, module_layout, resolve_target, stage_names, traced
from .result import Explanation

__all__ = ["CAM_METHODS", "TokenReshape", "ZeroAblationLayerVit", "cam_targets", "default_cam_target", "cam"]

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
    "ablationcam": AblationCAM,
}


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


def cam_targets(model: TokenFusionModel, trace: Trace) -> list[tuple[str, str]]:
    """Every ``(layer, kind)`` a CAM can target: trunk stages (kind ``"cnn"``), ``norm1`` of every
    self-attention block for each image-token kind it holds, and ``norm_kv`` (CNN keys) of every
    ``layerwise`` cross block."""
    targets = [(name, "cnn") for name in stage_names(model)]
    for name, layout in trace.layouts.items():
        targets += [(f"{name}.norm1", kind) for kind in layout.kinds if kind != "cls"]
    targets += [(f"{name}.norm_kv", "cnn") for name in trace.cross_attention]
    return targets


def default_cam_target(model: TokenFusionModel, trace: Trace, kind: str | None = None) -> tuple[str, str]:
    """The last trunk stage for ``kind`` None or ``"cnn"`` (when there is a trunk), else ``norm1`` of
    the readout's last block for ``kind`` (default ``"patch"``); ``layerwise`` CNN: the last ``norm_kv``."""
    targets = cam_targets(model, trace)
    stages = stage_names(model)
    if kind in (None, "cnn") and stages:
        return stages[-1], "cnn"
    kind = kind or "patch"
    last = list(trace.layouts)[-1] if trace.layouts else None
    for layer, k in reversed(targets):
        if k == kind and (layer.startswith(f"{last}.") or layer.endswith("norm_kv")):
            return layer, k
    raise ExplainError(f"{model.config.arch!r} has no layer with {kind!r} features. Expected one of {targets}")


def cam(
    model: TokenFusionModel, x: Tensor, method: str = "gradcam", layer: str | None = None, target: int | None = None,
    kind: str | None = None, *, batch_size: int = 16, eigen_smooth: bool = False,
    trace: Trace | None = None, logits: Tensor | None = None,
) -> Explanation:
    """A CAM of ``method`` (a key of :data:`CAM_METHODS`) for the normalised image ``x`` ``(1, 3, H, W)``.

    ``layer`` is a module name (default: :func:`default_cam_target`); ``kind`` picks the tokens of
    a token layer (needed where a layer holds both kinds). ``target`` defaults to the predicted
    class. ``batch_size`` bounds the forward batches of ScoreCAM and AblationCAM (whose progress
    bars are silenced). ``grid`` is the CAM on the layer's grid before ReLU; ``map`` clips,
    upsamples and normalises it. ``trace``/``logits`` of a traced forward on ``x`` may be passed
    to save one forward.
    """
    start = time.perf_counter()
    if method not in CAM_METHODS:
        raise ExplainError(f"Unknown CAM method {method!r}. Expected one of {list(CAM_METHODS)}")
    x = as_batch(x)
    if trace is None or logits is None:
        logits, trace = traced(model, x)
    target = resolve_target(logits, target)
    if layer is None:
        layer, kind = default_cam_target(model, trace, kind)
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        targets = cam_targets(model, trace)
        raise ExplainError(f"{type(model).__name__} has no module {layer!r}. Layers: {targets}") from None
    if layer in stage_names(model):
        reshape, kind = None, "cnn"
    else:
        layout = module_layout(trace, layer)
        if kind is None:
            kinds = [k for k in layout.kinds if k != "cls"]
            if len(kinds) != 1:
                raise ExplainError(f"Layer {layer!r} holds {kinds} tokens: pass kind= one of them")
            kind = kinds[0]
        try:
            reshape = TokenReshape(layout, kind)
        except KeyError as e:
            raise ExplainError(f"Layer {layer!r} has no {kind!r} tokens; it holds {list(layout.kinds)}") from e
    options: dict[str, Any] = {}
    if method == "ablationcam":
        ablation = AblationLayer() if reshape is None else ZeroAblationLayerVit()
        options = dict(batch_size=batch_size, ablation_layer=ablation)
    with _keep_grid(CAM_METHODS[method])(model, [module], reshape_transform=reshape, **options) as explainer:
        explainer.grids = []
        if method == "scorecam":
            explainer.batch_size = batch_size
        quiet = redirect_stderr(io.StringIO()) if method in ("scorecam", "ablationcam") else nullcontext()
        with quiet:  # their per-batch tqdm bars
            explainer(x, [ClassifierOutputTarget(target)], eigen_smooth=eigen_smooth)
        grid = torch.from_numpy(np.asarray(explainer.grids[-1][0], dtype=np.float32))
    model.zero_grad(set_to_none=True)
    return Explanation.from_grid(
        grid, tuple(x.shape[-2:]), method=method, layer=layer, target=target,
        seconds=time.perf_counter() - start, kind=kind,
    )
