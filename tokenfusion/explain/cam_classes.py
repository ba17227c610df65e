"""The ``pytorch_grad_cam`` side of the CAM methods (:class:`~tokenfusion.explain.cam.Cam`): our own
CAM classes and one run of any of them, named by class.

:class:`~tokenfusion.explain.cam.Cam` imports this module when it computes its first CAM:
``pytorch_grad_cam`` brings scikit-learn, SciPy, OpenCV and Matplotlib with it (about a second),
which a page showing only attention does not need.
"""
from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import nullcontext, redirect_stderr
from typing import Any

import numpy as np
import torch
import pytorch_grad_cam
from pytorch_grad_cam import AblationCAM, ScoreCAM
from pytorch_grad_cam.ablation_layer import AblationLayer, AblationLayerVit
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

__all__ = ["TopChannelsScoreCAM", "ZeroAblationLayerVit", "backend", "raw_cam"]


class TopChannelsScoreCAM(ScoreCAM):
    """ScoreCAM that scores only the ``channels`` channels whose activation varies most over the grid
    (variance per image: a flat channel makes a mask that hides nothing), one masked forward each
    instead of one per channel; the others weigh 0. With ``channels`` at least the layer's channels
    it is ScoreCAM. Ranking by variance, as Faster Score-CAM does, beat ranking by mean activation on
    token layers, where LayerNorm centres every channel (measured in bench/results/scorecam_topk.md)."""

    channels: int  # set by raw_cam

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


def backend(name: str) -> type[BaseCAM]:
    """The CAM class ``name``: one of ours, or one of ``pytorch_grad_cam``."""
    ours = {"TopChannelsScoreCAM": TopChannelsScoreCAM}
    if name not in ours and not hasattr(pytorch_grad_cam, name):
        raise ValueError(f"No CAM class {name!r} in pytorch_grad_cam or tokenfusion.explain.cam_classes")
    return ours.get(name) or getattr(pytorch_grad_cam, name)


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


def raw_cam(
    model: nn.Module, module: nn.Module, x: Tensor, name: str, target: int,
    reshape: Callable[[Tensor], Tensor] | None, *, batch_size: int, eigen_smooth: bool, quiet: bool,
    channels: int | None = None,
) -> Tensor:
    """The CAM of the class ``name`` (:func:`backend`) at ``module`` of ``model`` for class ``target``
    of the image ``x`` ``(1, 3, H, W)``, on the layer's grid ``(h, w)`` before ReLU; ``reshape`` lays
    token outputs ``(B, N, D)`` on their grid (None for a feature map ``(B, C, h, w)``). ``batch_size``
    bounds the masked batches of ScoreCAM and AblationCAM, ``channels`` the channels
    :class:`TopChannelsScoreCAM` scores; ``quiet`` silences their progress bars. The hooks are removed
    whatever happens."""
    cls = backend(name)
    options: dict[str, Any] = {}
    if issubclass(cls, AblationCAM):
        options = dict(batch_size=batch_size, ablation_layer=AblationLayer() if reshape is None else ZeroAblationLayerVit())
    with _keep_grid(cls)(model, [module], reshape_transform=reshape, **options) as explainer:
        explainer.grids = []
        if issubclass(cls, ScoreCAM):
            explainer.batch_size = batch_size
        if issubclass(cls, TopChannelsScoreCAM):
            explainer.channels = channels
        with redirect_stderr(io.StringIO()) if quiet else nullcontext():  # their per-batch tqdm bars
            explainer(x, [ClassifierOutputTarget(target)], eigen_smooth=eigen_smooth)
        return torch.from_numpy(np.asarray(explainer.grids[-1][0], dtype=np.float32))
