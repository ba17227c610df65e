"""The images an analysis runs over: held-out SynthShapes, or an ImageFolder ``val/`` split."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ..data import HELDOUT_SEED, SHAPES, SynthShapes
from ..data.imagefolder import DatasetError, open_split
from ..data.transforms import eval_transform
from ..models import ModelConfig

__all__ = ["AnalysisData", "AnalysisError", "open_data"]

SYNTHSHAPES = "synthshapes"


class AnalysisError(ValueError):
    """An analysis that cannot run; the message says what to change."""


@dataclass
class AnalysisData:
    """``dataset`` yields ``(image (3, H, W) normalised for the models, label)``; ``cues`` map labels
    to the label of each cue (SynthShapes: ``shape``, ``texture``)."""

    dataset: Dataset
    class_names: list[str]
    source: dict[str, object]
    cues: dict[str, Callable[[Tensor], Tensor]] = field(default_factory=dict)


def _input_of(config: ModelConfig) -> tuple:
    return config.img_size, config.crop_pct, tuple(config.mean), tuple(config.std)


def open_data(spec: str, configs: list[ModelConfig], class_names: list[str], images: int,
              seed: int = HELDOUT_SEED) -> AnalysisData:
    """``spec`` ``"synthshapes"`` (``images`` images of ``seed``, held out from training by default) or
    an ImageFolder root holding ``val/<class>/`` (a random subset of ``images``, fixed by ``seed``, when
    smaller than the split). Every model must take the same input (size, crop, normalisation), so
    that all of them see the same images."""
    inputs = {_input_of(c) for c in configs}
    if len(inputs) != 1:
        raise AnalysisError(f"The models take different inputs (img_size, crop_pct, mean, std): {sorted(inputs)}. "
                            "Analyse models of one input size together.")
    config = configs[0]
    transform = eval_transform(config)
    if images < 1:
        raise AnalysisError(f"--images must be at least 1, got {images}")
    if spec == SYNTHSHAPES:
        data = SynthShapes(images, image_size=config.img_size, seed=seed, transform=transform)
        if list(data.classes) != class_names:
            raise AnalysisError(f"The models' classes {class_names[:3]}... are not SynthShapes'. Pass --data DIR.")
        shapes = len(SHAPES)
        cues = {"shape": lambda y: y % shapes, "texture": lambda y: y // shapes}
        return AnalysisData(data, class_names, {"dataset": SYNTHSHAPES, "seed": seed, "images": images}, cues)
    try:
        split = open_split(spec, "val", transform)
    except DatasetError as e:
        raise AnalysisError(str(e)) from None
    if list(split.classes) != class_names:
        raise AnalysisError(f"{Path(spec) / 'val'} holds classes {split.classes[:3]}..., the models "
                            f"{class_names[:3]}...")
    chosen: Dataset = split
    if images < len(split):
        order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:images]
        chosen = Subset(split, sorted(order.tolist()))
    return AnalysisData(chosen, class_names, {"data_path": str(spec), "images": len(chosen), "seed": seed})
