"""The scoring core: what one map scores against its object's mask, beside the controls.

The scoring command (``bench/score_explanations.py``) runs these over held-out SynthShapes images and
writes the results files :mod:`tokenfusion.explain.scores` reads: which ``(method, layer, kind)`` of a
model to score (:func:`variants`), the figures of one map (:func:`map_figures`: pointing game and
energy inside the mask, against its own image's mask and another image's, whether it is blank,
deletion and insertion AUC), what maps that ignore the image score (:func:`control_scores`) and
whether each row localises (:func:`judged`). No file, command line or Markdown here.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..models import TokenFusionModel
from .metrics import (
    CENTRE_PRIOR_SIGMA, centre_prior, deletion_curve, insertion_curve, is_blank, mask_energy, pointing_game,
    pointing_tolerance,
)
from .registry import METHODS, MethodInfo, available_methods
from .scores import is_control, localises

__all__ = ["GRADIENT_METHODS", "control_scores", "judged", "map_figures", "tolerance_px", "variants"]

#: Methods whose map is computed from gradients (their spec says so): the randomisation check should
#: decorrelate them.
GRADIENT_METHODS = frozenset(name for name, method in METHODS.items() if method.gradients)


def variants(
    model: TokenFusionModel, methods: list[str] | None = None
) -> list[tuple[MethodInfo, str | None, str | None]]:
    """``(method, layer, kind)`` to score: each method's default target, then the last target of
    each other token kind (so fusion models are scored on CNN and patch tokens alike)."""
    chosen = []
    for info in available_methods(model):
        if methods is not None and info.name not in methods:
            continue
        pairs = [info.default] + [[t for t in info.targets if t[1] == kind][-1] for kind in info.kinds]
        chosen += [(info, layer, kind) for layer, kind in dict.fromkeys(pairs)]
    return chosen


def tolerance_px(given: int | None, image_size: int) -> int:
    """The pointing-game tolerance in pixels: ``given`` (``--tolerance``), else :func:`pointing_tolerance`."""
    return pointing_tolerance(image_size) if given is None else given


def map_figures(model: TokenFusionModel, x: Tensor, saliency: Tensor, target: int, mask: Tensor, other: Tensor,
                tolerance: int, *, steps: int, baseline: str) -> dict[str, float]:
    """The figures of one map ``saliency`` ``(H, W)`` of class ``target`` on the image ``x``
    ``(1, 3, H, W)``: pointing game (within ``tolerance`` pixels) and energy inside ``mask`` ``(H, W)``
    and inside ``other`` (another image's mask, the mismatched control), 1.0 for a blank map, and the
    AUC of the deletion and insertion curves of ``steps`` steps (deleted pixels become ``baseline``)."""
    return {"pointing_game": pointing_game(saliency, mask, tolerance),
            "pointing_game_mismatched": pointing_game(saliency, other, tolerance),
            "blank_maps": float(is_blank(saliency)),
            "mask_energy": mask_energy(saliency, mask),
            "mask_energy_mismatched": mask_energy(saliency, other),
            "deletion_auc": deletion_curve(model, x, saliency, target, steps=steps, baseline=baseline).auc,
            "insertion_auc": insertion_curve(model, x, saliency, target, steps=steps, baseline=baseline).auc}


def control_scores(masks: Sequence[Tensor], tolerance: int, sigma: float = CENTRE_PRIOR_SIGMA) -> dict[str, float]:
    """What maps that ignore the image score against ``masks`` (each ``(H, W)``, one size), with the
    pointing game's ``tolerance`` in pixels. ``centre_pointing``, ``centre_energy``: the centre prior
    (:func:`centre_prior` of ``sigma``), the figures of a results file's control row. ``blank_pointing``,
    ``blank_energy``: a blank (all-zero) map. ``area``: the mean share of the image the object covers
    (the energy of a uniform map)."""
    height, width = masks[0].shape[-2:]
    prior, blank = centre_prior(height, width, sigma), torch.zeros(height, width)
    mean = lambda score, m: sum(score(m, mask) for mask in masks) / len(masks)  # noqa: E731
    return {"centre_pointing": mean(lambda m, mask: pointing_game(m, mask, tolerance), prior),
            "centre_energy": mean(mask_energy, prior),
            "blank_pointing": mean(lambda m, mask: pointing_game(m, mask, tolerance), blank),
            "blank_energy": mean(mask_energy, blank),
            "area": sum(float(m.float().mean()) for m in masks) / len(masks)}


def judged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with ``localises`` set on each from its checkpoint's control row
    (:func:`~tokenfusion.explain.scores.localises`: None where a figure is missing)."""
    centres = {r["checkpoint"]: r for r in rows if is_control(r)}
    return [{**r, "localises": localises(r, centres.get(r["checkpoint"]))} for r in rows]
