"""Scores of an explanation: against a ground-truth mask, against the model, against randomness.

- :func:`pointing_game`, :func:`mask_energy`: does the map fall on the object's mask? A blank
  (constant) map (:func:`is_blank`) points nowhere: the pointing game counts it as a miss.
  :func:`pointing_tolerance` scales Zhang et al.'s tolerance (15 px at 224 px) to an image side.
- :func:`centre_prior`: a control that ignores the image, a centred Gaussian. Where objects often
  cover the image centre it wins the pointing game without looking, so a map's mask scores mean
  something only beside this control's (and beside the same map scored against another image's
  mask, which ``bench/score_explanations.py`` records as well).
- :func:`deletion_curve`, :func:`insertion_curve` (Petsiuk et al. 2018, RISE): the target's
  probability as the most salient pixels are removed (replaced by a baseline) or inserted (into
  the baseline), with the area under the curve. Lower deletion AUC and higher insertion AUC mean
  a more faithful map. The baseline is ``"blur"`` (a Gaussian blur of the image, sigma = side/16:
  removes the object's texture and edges while keeping colours, so the curve is not dominated by
  out-of-distribution flat patches) or ``"mean"`` (every pixel the model's mean colour, i.e. 0 in
  normalised input space).
- :func:`randomisation_check` (Adebayo et al. 2018): cascading re-initialisation from the head
  down on a deep copy; a faithful method's maps decorrelate from the trained map.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from ..models import TokenFusionModel
from ._utils import ExplainError, as_batch, device_of
from .result import Explanation, is_blank

__all__ = [
    "CENTRE_PRIOR_SIGMA", "POINTING_TOLERANCE_224", "Curve", "Randomisation", "is_blank", "pointing_game",
    "pointing_tolerance", "centre_prior", "mask_energy", "auc", "deletion_curve", "insertion_curve",
    "spearman", "pearson", "cascade_units", "randomise_", "randomisation_check",
]


#: Zhang et al.'s pointing-game tolerance at 224 px: 15 px (:func:`pointing_tolerance` scales it).
POINTING_TOLERANCE_224 = 15
#: The standard deviation of :func:`centre_prior`'s Gaussian, as a share of the image's shorter side.
CENTRE_PRIOR_SIGMA = 0.125


def pointing_tolerance(image_size: int) -> int:
    """The pointing-game tolerance for images of side ``image_size``: Zhang et al.'s 15 px at 224 px
    scaled to the side, ``round(15 * image_size / 224)`` (4 px at 64 px, 3 px at 48 px)."""
    return round(POINTING_TOLERANCE_224 * image_size / 224)


def centre_prior(height: int, width: int | None = None, sigma: float = CENTRE_PRIOR_SIGMA) -> Tensor:
    """A map ``(H, W)`` that ignores the image: a Gaussian centred on the image's centre, of standard
    deviation ``sigma`` times the shorter side, 1 at its peak. On an even side the centre falls between
    pixels, so the central 2 x 2 pixels tie for the maximum (and the pointing game counts the map as a
    hit when any of them is within tolerance of the mask)."""
    width = height if width is None else width
    if height < 1 or width < 1 or not sigma > 0:
        raise ExplainError(f"A centre prior needs a positive size and sigma, not {height}x{width}, sigma {sigma}")
    std = sigma * min(height, width)
    ys = torch.exp(-((torch.arange(height) - (height - 1) / 2) ** 2) / (2 * std**2))
    xs = torch.exp(-((torch.arange(width) - (width - 1) / 2) ** 2) / (2 * std**2))
    prior = ys[:, None] * xs[None, :]
    return prior / prior.max()


def _check_pair(saliency: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    if saliency.shape != mask.shape:
        raise ExplainError(f"map {tuple(saliency.shape)} and mask {tuple(mask.shape)} must have the same (H, W)")
    return saliency.float(), mask.bool()


def pointing_game(saliency: Tensor, mask: Tensor, tolerance: int = 0) -> float:
    """1.0 when the map's maximum ``(H, W)`` lies inside ``mask`` ``(H, W)`` grown by ``tolerance``
    pixels (Zhang et al. 2018 use 15 px at 224: :func:`pointing_tolerance`), else 0.0. Ties: any
    maximal pixel inside counts, but a blank map (:func:`is_blank`) is a miss."""
    saliency, mask = _check_pair(saliency, mask)
    if is_blank(saliency):
        return 0.0
    if tolerance > 0:
        mask = F.max_pool2d(mask.float()[None, None], 2 * tolerance + 1, stride=1, padding=tolerance)[0, 0] > 0
    return float(mask[saliency == saliency.max()].any())


def mask_energy(saliency: Tensor, mask: Tensor) -> float:
    """Share of the map's total (non-negative) mass inside ``mask``, in [0, 1]; 0 for an empty map."""
    saliency, mask = _check_pair(saliency, mask)
    saliency = saliency.clamp(min=0)
    total = saliency.sum()
    return float(saliency[mask].sum() / total) if total > 0 else 0.0


def auc(values: Tensor) -> float:
    """Trapezoidal area under ``values`` ``(K,)`` sampled evenly on [0, 1]."""
    values = values.float().flatten()
    if values.numel() < 2:
        raise ExplainError("A curve needs at least two points")
    return float(torch.trapezoid(values, dx=1.0 / (values.numel() - 1)))


@dataclass
class Curve:
    """``fractions`` ``(K,)`` of pixels removed/inserted, ``scores`` ``(K,)`` target probabilities, ``auc``."""

    fractions: Tensor
    scores: Tensor
    auc: float


def _baseline(x: Tensor, kind: str) -> Tensor:
    if kind == "mean":
        return torch.zeros_like(x)
    if kind == "blur":
        sigma = max(1.0, min(x.shape[-2:]) / 16)
        size = min(2 * math.ceil(3 * sigma) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
        return TF.gaussian_blur(x, [size, size], [sigma, sigma])
    raise ExplainError(f"Unknown baseline {kind!r}. Expected one of ['blur', 'mean']")


@torch.no_grad()
def _curve(
    model: nn.Module, x: Tensor, saliency: Tensor, target: int, steps: int, baseline: str, batch_size: int, insert: bool
) -> Curve:
    model.eval()
    x = as_batch(x).to(device_of(model))
    if saliency.shape != x.shape[-2:]:
        raise ExplainError(f"map {tuple(saliency.shape)} must match the image {tuple(x.shape[-2:])}")
    base = _baseline(x, baseline)
    h, w = x.shape[-2:]
    order = saliency.flatten().to(x.device).argsort(descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=x.device)
    rank = rank.view(1, 1, h, w)
    fractions = torch.linspace(0, 1, steps + 1)
    counts = (fractions * h * w).round().long().to(x.device)
    scores = []
    for chunk in counts.split(batch_size):
        chosen = rank < chunk.view(-1, 1, 1, 1)  # (b, 1, H, W): the first k pixels of the order
        images = torch.where(chosen, x, base) if insert else torch.where(chosen, base, x)
        scores.append(model(images).softmax(-1)[:, target].float().cpu())
    scores = torch.cat(scores)
    return Curve(fractions, scores, auc(scores))


def deletion_curve(
    model: nn.Module, x: Tensor, saliency: Tensor, target: int, *, steps: int = 20, baseline: str = "blur",
    batch_size: int = 32,
) -> Curve:
    """Probability of ``target`` as the top ``k/steps`` of pixels by ``saliency`` ``(H, W)`` are
    replaced by the baseline, ``k = 0..steps``, evaluated ``batch_size`` images per forward."""
    return _curve(model, x, saliency, target, steps, baseline, batch_size, insert=False)


def insertion_curve(
    model: nn.Module, x: Tensor, saliency: Tensor, target: int, *, steps: int = 20, baseline: str = "blur",
    batch_size: int = 32,
) -> Curve:
    """Probability of ``target`` as the top ``k/steps`` of pixels are copied from the image into the baseline."""
    return _curve(model, x, saliency, target, steps, baseline, batch_size, insert=True)


def _average_ranks(values: Tensor) -> Tensor:
    """Ranks ``0..n-1`` of a flat tensor, ties sharing the mean of their ranks."""
    unique, inverse, counts = torch.unique(values, return_inverse=True, return_counts=True)
    first = counts.cumsum(0) - counts  # rank of the first element of each group of ties
    return (first.double() + (counts.double() - 1) / 2)[inverse]


def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two tensors of equal size (flattened); 0 when either is constant."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    denom = a.norm() * b.norm()
    return float(a @ b / denom) if denom > 0 else 0.0


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two tensors of equal size (flattened), ties given average ranks."""
    if a.numel() != b.numel():
        raise ExplainError(f"Cannot correlate {a.numel()} values with {b.numel()}")
    return pearson(_average_ranks(a.flatten()), _average_ranks(b.flatten()))


def cascade_units(model: TokenFusionModel) -> list[str]:
    """Module names in the order the cascade randomises them: the reverse of the order the
    forward first calls them (head first, then norm, last blocks, ..., token embeddings, trunk
    stages, stem), as ``model.parts_in_forward_order()`` declares them."""
    return list(reversed(model.parts_in_forward_order()))


def randomise_(module: nn.Module) -> None:
    """Re-initialise ``module`` in place: ``reset_parameters()`` where a submodule has it, a
    truncated normal (std 0.02, the models' own init) for every other parameter (position
    embeddings, gates). Batch-norm running statistics are reset too."""
    covered: set[int] = set()
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
            covered.update(id(p) for p in m.parameters(recurse=False))
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    with torch.no_grad():
        for p in module.parameters():
            if id(p) not in covered:
                nn.init.trunc_normal_(p, std=0.02)


@dataclass
class Randomisation:
    """``units[i]`` is the last unit randomised at step ``i`` (all before it too, top-down);
    ``correlations[i]`` the Spearman correlation of the trained map with the map after step ``i``."""

    units: list[str]
    correlations: list[float]

    @property
    def mean(self) -> float:
        return sum(self.correlations) / len(self.correlations)


def randomisation_check(
    model: nn.Module, x: Tensor, explain_fn: Callable[[nn.Module, Tensor], Explanation], *, steps: int | None = None,
    seed: int = 0, reference: Explanation | None = None, progress: Callable[[int, int], None] | None = None,
) -> Randomisation:
    """Cascading model-parameter randomisation (Adebayo et al. 2018) on a deep copy of ``model``.

    ``explain_fn(model, x)`` makes the map (fix its target to the trained model's, e.g.
    ``lambda m, x: explain(m, x, "gradcam", target=t)``). Units (:func:`cascade_units`) are
    re-initialised one after another from the head down; after ``steps`` evenly spaced cuts (all
    units when None) the new map is compared with the trained one by Spearman rank correlation.
    Near 1 means the method ignores the weights; a faithful method falls towards 0. The
    original model is left untouched. ``progress(maps done, maps in all)``, when given, is called
    after every map (the trained one included); an exception it raises ends the test there.
    """
    x = as_batch(x)
    units = cascade_units(model)
    cuts = list(range(1, len(units) + 1))
    if steps is not None and steps < len(cuts):
        cuts = sorted({round(1 + i * (len(units) - 1) / max(steps - 1, 1)) for i in range(steps)})
    report = progress or (lambda done, total: None)
    report(0, len(cuts) + 1)
    reference = reference or explain_fn(model, x)
    report(1, len(cuts) + 1)
    clone = copy.deepcopy(model)
    done, names, correlations = 0, [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for cut in cuts:
            for unit in units[done:cut]:
                randomise_(clone.get_submodule(unit))
            done = cut
            names.append(units[cut - 1])
            correlations.append(spearman(reference.map, explain_fn(clone, x).map))
            report(len(correlations) + 1, len(cuts) + 1)
    return Randomisation(names, correlations)
