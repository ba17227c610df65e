"""Reference answers to the notebook exercises: for the teacher, and for the automated tests.

Students: try each exercise before you read this file!

A notebook uses these answers only when the environment variable ``TOKENFUSION_SOLUTIONS=1`` is set,
and only for answers still left at ``None``; a student's own answer is always the one checked.
Each answer is computed here in its own way (from configs and the public API), not copied from
the notebook's check cell, so that the check tests something.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tokenfusion.data import SHAPES
from tokenfusion.explain import (
    Randomisation, centre_prior, explain, fusion_weights, mask_energy, pointing_game, pointing_tolerance,
    randomisation_check,
)
from tokenfusion.interventions import ablate_from, ablation_sites
from tokenfusion.models import ModelConfig, TokenFusionModel, create

__all__ = [
    "nb01_ex1", "nb01_ex2", "nb01_ex3", "nb02_ex1", "nb02_ex2", "nb02_ex3", "nb03_ex1", "nb03_ex2",
    "nb03_ex3", "nb04_ex1", "nb04_ex2", "nb04_ex3", "nb05_ex1", "nb05_ex2", "nb05_ex3", "nb05_ex4",
]


# 01_tokens ---------------------------------------------------------------------------------------

def nb01_ex1(trunk: nn.Module) -> tuple[int, int]:
    """Receptive field and jump (px) of a trunk's last stage: the main path's convolutions and
    pooling layers in forward order (residual shortcuts see less and are left out)."""
    rf, jump = 1, 1
    for name, m in trunk.named_modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)) and "downsample" not in name:
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            rf, jump = rf + (k - 1) * jump, jump * s
    return rf, jump


def nb01_ex2(size: int) -> dict[str, int]:
    """Token counts of the ``early`` tiny model at ``size`` px: one class token, a CNN token per
    position of the trunk's last feature map (its stride is the trunk's last reduction), a patch
    token per ``patch_size`` square."""
    model = create("early", "tiny")
    stride, patch = model.trunk.reductions[-1], model.config.patch_size
    return {"cls": 1, "cnn": (size // stride) ** 2, "patch": (size // patch) ** 2}


def nb01_ex3(config: ModelConfig) -> int:
    """Pixels feeding one patch token before attention: its own ``p x p`` square."""
    return config.patch_size ** 2


# 02_fusion_strategies ----------------------------------------------------------------------------

def nb02_ex1(late: TokenFusionModel) -> dict[str, int]:
    """The ``late`` fusion sequence: a fresh class token, then each stream's class token and tokens."""
    size = late.config.img_size
    cnn_h, cnn_w = late.trunk.grids((size, size))[-1]
    patch = (size // late.config.patch_size) ** 2
    return {"tokens": 1 + (1 + cnn_h * cnn_w) + (1 + patch), "cls": 3}


def nb02_ex2(layerwise: TokenFusionModel, x: torch.Tensor) -> float:
    """Largest logit difference between a fresh ``layerwise`` model and a ``vit`` holding its patch stream."""
    config = layerwise.config
    vit = create("vit", config.size, num_classes=config.num_classes, img_size=config.img_size,
                 patch_size=config.patch_size).eval()
    vit.load_state_dict(layerwise.state_dict(), strict=False)
    with torch.no_grad():
        return float((vit(x) - layerwise(x)).abs().max())


def nb02_ex3(early: TokenFusionModel, images: torch.Tensor) -> str:
    """The ``early`` layer whose class token puts the most attention on CNN tokens, over ``images``."""
    weights = fusion_weights(early, images)
    per_layer = weights.cls_share["cnn"].mean(dim=(0, 2))  # (L,)
    return weights.layers[int(per_layer.argmax())]


# 03_explanations ---------------------------------------------------------------------------------

def nb03_ex1(items: list[tuple[torch.Tensor, torch.Tensor, int]], tolerance: int) -> list[int]:
    """Indices of the ``(x, mask, label)`` items whose pointing game (``tolerance`` px) the centre prior
    wins: the same centred map for every image, scored against each image's mask."""
    hits = []
    for i, (_, mask, _) in enumerate(items):
        if pointing_game(centre_prior(*mask.shape), mask, tolerance):
            hits.append(i)
    return hits


def nb03_ex2(model: TokenFusionModel, items: list[tuple[torch.Tensor, torch.Tensor, int]]) -> dict[str, float]:
    """Mean pointing game (the tolerance scaled to the image, ``pointing_tolerance``) and mask energy of
    Occlusion over ``(x, mask, label)`` items, true class explained."""
    tolerance = pointing_tolerance(model.config.img_size)
    maps = [(explain(model, x, "occlusion", target=label).map, mask) for x, mask, label in items]
    return {"pointing game": sum(pointing_game(m, k, tolerance) for m, k in maps) / len(maps),
            "mask energy": sum(mask_energy(m, k) for m, k in maps) / len(maps)}


def nb03_ex3(model: TokenFusionModel, x: torch.Tensor, target: int) -> Randomisation:
    """The cascading randomisation check of Integrated Gradients (8 steps to keep it quick)."""
    fn = lambda m, image: explain(m, image, "integrated_gradients", target=target, n_steps=16)  # noqa: E731
    return randomisation_check(model, x, fn, steps=8, seed=0)


# 04_train_and_compare ----------------------------------------------------------------------------

def nb04_ex1(preset: dict[str, Any], processes: int) -> float:
    """Peak learning rate: the preset's ``lr`` is for ``lr_batch`` images and scales linearly with
    the global batch (``batch_size`` per process times the number of processes)."""
    return preset["lr"] * preset["batch_size"] * processes / preset["lr_batch"]


def nb04_ex2(train_samples: int, batch_size: int, epochs: int) -> int:
    """Optimiser steps of a run: full batches per epoch (the last partial batch is dropped), times epochs."""
    return train_samples // batch_size * epochs


def nb04_ex3(histories: dict[str, list[dict[str, Any]]]) -> str:
    """The architecture whose last epoch has the highest validation top-1."""
    return max(histories, key=lambda arch: histories[arch][-1]["top1"])


# 05_analysis -------------------------------------------------------------------------------------

def nb05_ex1(attention: torch.Tensor, side: int, image_size: int) -> float:
    """Mean attention distance (px) of ``attention`` ``(N, N)`` over the patch tokens of a
    ``side x side`` grid tiling an ``image_size`` square, the class token first: for every patch query,
    the attention-weighted distance between cell centres, renormalised over the patch keys; then the
    mean over the queries. One loop per query and key, no library."""
    cell = image_size / side
    centres = [((i // side + 0.5) * cell, (i % side + 0.5) * cell) for i in range(side * side)]
    total = 0.0
    for q, cq in enumerate(centres, start=1):
        weights = [float(attention[q, k]) for k in range(1, side * side + 1)]
        total += sum(w * math.dist(cq, ck) for w, ck in zip(weights, centres)) / sum(weights)
    return total / len(centres)


def _accuracy_without(model: TokenFusionModel, images: torch.Tensor, labels: torch.Tensor,
                      kind: str) -> list[dict[str, float]]:
    """For k = 1..L: top-1, shape and texture accuracy (%) with ``kind`` tokens replaced by their mean
    from place k on, each ablation run as a full forward of ``images``."""
    shapes = len(SHAPES)
    with torch.no_grad():
        _, trace = model(images[:1], trace=True)  # the layouts: the same for every image
        places = len(ablation_sites(model.structure, kind))
        out = []
        for k in range(1, places + 1):
            with ablate_from(model, trace.layouts, kind, k, "mean"):
                predicted = model(images).argmax(-1)
            out.append({"top1": 100 * float((predicted == labels).float().mean()),
                        "shape": 100 * float((predicted % shapes == labels % shapes).float().mean()),
                        "texture": 100 * float((predicted // shapes == labels // shapes).float().mean())})
    return out


def nb05_ex2(models: dict[str, TokenFusionModel], images: torch.Tensor, labels: torch.Tensor) -> dict[str, str]:
    """For every fusion model, the cue whose accuracy is lower on average over k = 1..L with the CNN
    tokens removed from place k on."""
    out = {}
    for name, model in models.items():
        curve = _accuracy_without(model, images, labels, "cnn")
        out[name] = min(("shape", "texture"), key=lambda cue: sum(row[cue] for row in curve))
    return out


def nb05_ex3(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of ``x`` ``(n, d1)`` and ``y`` ``(n, d2)``, feature form:
    centre every column, then ``|y^T x|_F^2 / (|x^T x|_F |y^T y|_F)``."""
    x, y = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    return float((y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()))


def nb05_ex4(model: TokenFusionModel, images: torch.Tensor, labels: torch.Tensor, within: float = 1.0) -> str:
    """The first place from which the CNN tokens can be removed with top-1 within ``within`` points of
    the intact model's: its module name, or ``"none"`` when every place costs more."""
    with torch.no_grad():
        intact = 100 * float((model(images).argmax(-1) == labels).float().mean())
    sites = [name for name, _ in ablation_sites(model.structure, "cnn")]
    curve = _accuracy_without(model, images, labels, "cnn")
    return next((site for site, row in zip(sites, curve) if row["top1"] >= intact - within), "none")
