"""Pixel attributions through ``captum``: Integrated Gradients, SmoothGrad, Occlusion.

Each returns an :class:`Explanation` whose ``grid`` is the attribution summed in absolute value
over the colour channels, ``(H, W)`` at image resolution. Inputs are normalised images, so the
all-zero baseline used by Integrated Gradients and Occlusion is the model's mean colour
(``model.config.mean``): "no information" in the model's own input space.

Each method imports ``captum`` when it first runs: ``captum`` brings scikit-learn, SciPy and
Matplotlib with it (about half a second), which importing ``tokenfusion.explain`` does not need.
"""
from __future__ import annotations

import time

import torch
from torch import Tensor

from ..models import TokenFusionModel
from ._utils import ExplainError, as_batch, device_of, resolve_target
from .result import Explanation

__all__ = ["OCCLUSION_STRIDE", "OCCLUSION_WINDOW", "integrated_gradients", "smoothgrad", "occlusion"]

#: Occlusion's window, a fraction of the image side (6 px at 48 px, 28 px at 224 px).
OCCLUSION_WINDOW = 0.125
#: Occlusion's stride, a fraction of its window: windows side by side. ``bench/results/occlusion_stride_*.md``
#: score it against half a window apart, which takes over three times the forward passes.
OCCLUSION_STRIDE = 1.0


def _prepare(model: TokenFusionModel, x: Tensor, target: int | None) -> tuple[Tensor, int]:
    model.eval()
    x = as_batch(x).to(device_of(model))
    with torch.no_grad():
        target = resolve_target(model(x), target)
    return x, target


def _result(attr: Tensor, x: Tensor, method: str, target: int, start: float) -> Explanation:
    grid = attr.detach()[0].abs().sum(0).cpu()  # (H, W)
    return Explanation.from_grid(
        grid, tuple(x.shape[-2:]), method=method, layer=None, target=target,
        seconds=time.perf_counter() - start,
    )


def integrated_gradients(
    model: TokenFusionModel, x: Tensor, target: int | None = None, *, n_steps: int = 32, internal_batch_size: int = 16,
) -> Explanation:
    """Integrated Gradients (Sundararajan et al. 2017) from the mean-colour baseline, Gauss-Legendre
    ``n_steps``, at most ``internal_batch_size`` images per forward."""
    from captum.attr import IntegratedGradients

    start = time.perf_counter()
    x, target = _prepare(model, x, target)
    attr = IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=n_steps, internal_batch_size=internal_batch_size
    )
    model.zero_grad(set_to_none=True)
    return _result(attr, x, "integrated_gradients", target, start)


def smoothgrad(
    model: TokenFusionModel, x: Tensor, target: int | None = None, *, n_samples: int = 16, stdev: float = 0.15,
    batch_size: int = 16, seed: int = 0,
) -> Explanation:
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over ``n_samples`` noisy copies,
    noise ``stdev`` as a fraction of the input's value range, ``batch_size`` copies per forward. The
    noise is drawn from ``seed`` (the same map every time), leaving the global random state untouched."""
    from captum.attr import NoiseTunnel, Saliency

    start = time.perf_counter()
    x, target = _prepare(model, x, target)
    sigma = float(stdev * (x.max() - x.min()))
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        attr = NoiseTunnel(Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=n_samples, nt_samples_batch_size=batch_size, stdevs=sigma,
            target=target, abs=False,
        )
    model.zero_grad(set_to_none=True)
    return _result(attr, x, "smoothgrad", target, start)


def occlusion(
    model: TokenFusionModel, x: Tensor, target: int | None = None, *, window: float = OCCLUSION_WINDOW,
    stride: float = OCCLUSION_STRIDE, perturbations_per_eval: int = 16,
) -> Explanation:
    """Occlusion (Zeiler & Fergus 2014): the drop of the target logit when a square window is
    set to the mean colour. ``window`` is a fraction of the image side, ``stride`` a fraction of the
    window; at most ``perturbations_per_eval`` per forward."""
    from captum.attr import Occlusion

    start = time.perf_counter()
    if not 0 < window <= 1 or not 0 < stride <= 1:
        raise ExplainError(f"window and stride are fractions in (0, 1]; got window={window}, stride={stride}")
    x, target = _prepare(model, x, target)
    side = max(1, round(window * min(x.shape[-2:])))
    step = max(1, round(stride * side))
    with torch.no_grad():
        attr = Occlusion(model).attribute(
            x, sliding_window_shapes=(3, side, side), strides=(3, step, step), baselines=0.0, target=target,
            perturbations_per_eval=perturbations_per_eval,
        )
    return _result(attr, x, "occlusion", target, start)
