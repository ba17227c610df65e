"""What an analysis will cost before it runs: :func:`analyze` timed on the first few images of the
data set, scaled to all of them (its time grows linearly with the number of images)."""
from __future__ import annotations

import dataclasses
import time
from typing import Any

from torch.utils.data import Subset

from ..models import TokenFusionModel
from ..models.geometry import token_geometries
from .data import AnalysisData
from .runner import DEFAULT_MEASURES, analyze

__all__ = ["PROBE_IMAGES", "seconds_per_image"]

#: Images the estimate is timed on: one batch, small enough to cost a fraction of a second on the
#: tiny models, large enough that the per-batch overhead does not dominate.
PROBE_IMAGES = 8


def seconds_per_image(models: dict[str, TokenFusionModel], data: AnalysisData, probe: int = PROBE_IMAGES,
                      **options: Any) -> float:
    """Seconds :func:`analyze` (``options``: its keyword arguments) spends per image of ``data``,
    measured on its first ``probe`` images in one batch. Multiply by the images to analyse. Where the
    tokens of each model sit (:func:`~tokenfusion.models.geometry.token_geometries`, for the attention
    distance) is measured once per model beforehand, outside the timing."""
    first = dataclasses.replace(data, dataset=Subset(data.dataset, range(min(probe, len(data.dataset)))))
    if "attention_distance" in options.get("measures", DEFAULT_MEASURES):
        for model in models.values():  # measured once per model, not per image: not part of the estimate
            token_geometries(model)
    start = time.perf_counter()
    analyze(models, first, **{**options, "batch_size": probe, "progress": False})
    return (time.perf_counter() - start) / max(len(first.dataset), 1)
