"""The pixel attributions through ``captum``: Integrated Gradients, SmoothGrad, Occlusion.

Each grid is the attribution summed in absolute value over the colour channels, ``(H, W)`` at
image resolution. Inputs are normalised images, so the all-zero baseline used by Integrated
Gradients and Occlusion is the model's mean colour (``model.config.mean``): "no information" in
the model's own input space.

Each method imports ``captum`` when it first runs: ``captum`` brings scikit-learn, SciPy and
Matplotlib with it (about half a second), which importing ``tokenfusion.explain`` does not need.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..models import ModelStructure, TokenFusionModel
from ._utils import ExplainError
from .spec import Method, Passes, Session, Targets

__all__ = ["Attribution", "IntegratedGradients", "Occlusion", "SmoothGrad"]


class Attribution(Method):
    """A method on the pixels: it takes no layer and no kind, and applies to every model."""

    def targets(self, structure: ModelStructure) -> Targets | None:
        return Targets(((None, None),), (None, None))

    def grid(self, session: Session, layer: str | None, kind: str | None, target: int,
             options: Mapping[str, Any]) -> tuple[Tensor, str | None]:
        attr = self.attribute(session.model, session.x, target, **options)  # (1, 3, H, W)
        return attr.detach()[0].abs().sum(0).cpu(), None

    def attribute(self, model: TokenFusionModel, x: Tensor, target: int, **options: Any) -> Tensor:
        """captum's attribution ``(1, 3, H, W)`` of class ``target`` for the image ``x`` ``(1, 3, H, W)``."""
        raise NotImplementedError


class IntegratedGradients(Attribution):
    """Integrated Gradients (Sundararajan et al. 2017) from the mean-colour baseline, Gauss-Legendre
    ``n_steps``, at most ``internal_batch_size`` images per forward."""

    name = "integrated_gradients"
    family = "gradient"
    gradients = True
    options = {"n_steps": 32, "internal_batch_size": 16}

    def passes(self, model: TokenFusionModel, channels: Mapping[str, int], layer: str | None, kind: str | None,
               options: Mapping[str, Any]) -> Passes:
        steps = int(options["n_steps"])
        return Passes(steps, steps, True)

    def attribute(self, model: TokenFusionModel, x: Tensor, target: int, *, n_steps: int,
                  internal_batch_size: int) -> Tensor:
        from captum.attr import IntegratedGradients as Captum

        attr = Captum(model).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=n_steps,
                                       internal_batch_size=internal_batch_size)
        model.zero_grad(set_to_none=True)
        return attr


class SmoothGrad(Attribution):
    """SmoothGrad (Smilkov et al. 2017): the gradient averaged over ``n_samples`` noisy copies,
    noise ``stdev`` as a fraction of the input's value range, ``batch_size`` copies per forward. The
    noise is drawn from ``seed`` (the same map every time), leaving the global random state untouched."""

    name = "smoothgrad"
    family = "gradient"
    gradients = True
    options = {"n_samples": 16, "stdev": 0.15, "batch_size": 16, "seed": 0}

    def passes(self, model: TokenFusionModel, channels: Mapping[str, int], layer: str | None, kind: str | None,
               options: Mapping[str, Any]) -> Passes:
        samples = int(options["n_samples"])
        return Passes(samples, samples, True)

    def attribute(self, model: TokenFusionModel, x: Tensor, target: int, *, n_samples: int, stdev: float,
                  batch_size: int, seed: int) -> Tensor:
        from captum.attr import NoiseTunnel, Saliency

        sigma = float(stdev * (x.max() - x.min()))
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)
            attr = NoiseTunnel(Saliency(model)).attribute(
                x, nt_type="smoothgrad", nt_samples=n_samples, nt_samples_batch_size=batch_size, stdevs=sigma,
                target=target, abs=False,
            )
        model.zero_grad(set_to_none=True)
        return attr


class Occlusion(Attribution):
    """Occlusion (Zeiler & Fergus 2014): the drop of the target logit when a square window is set to
    the mean colour. ``window`` is a fraction of the image side (6 px at 48 px, 28 px at 224 px),
    ``stride`` a fraction of the window (1: windows side by side; ``bench/results/occlusion_stride_*.md``
    scores it against half a window apart, which takes over three times the forward passes); at most
    ``perturbations_per_eval`` images per forward."""

    name = "occlusion"
    family = "perturbation"
    options = {"window": 0.125, "stride": 1.0, "perturbations_per_eval": 16}

    @staticmethod
    def _sides(size: int, window: float, stride: float) -> tuple[int, int]:
        """The window's side and step in pixels on an image of side ``size``."""
        if not 0 < window <= 1 or not 0 < stride <= 1:
            raise ExplainError(f"window and stride are fractions in (0, 1]; got window={window}, stride={stride}")
        side = max(1, round(float(window) * size))
        return side, max(1, round(float(stride) * side))

    def passes(self, model: TokenFusionModel, channels: Mapping[str, int], layer: str | None, kind: str | None,
               options: Mapping[str, Any]) -> Passes:
        size = model.config.img_size
        side, step = self._sides(size, options["window"], options["stride"])
        per_side = (size - side) // step + 1
        return Passes(per_side * per_side + 1, 0, True)  # and the unoccluded image

    @torch.no_grad()
    def attribute(self, model: TokenFusionModel, x: Tensor, target: int, *, window: float, stride: float,
                  perturbations_per_eval: int) -> Tensor:
        from captum.attr import Occlusion as Captum

        side, step = self._sides(min(x.shape[-2:]), window, stride)
        return Captum(model).attribute(x, sliding_window_shapes=(3, side, side), strides=(3, step, step),
                                       baselines=0.0, target=target, perturbations_per_eval=perturbations_per_eval)
