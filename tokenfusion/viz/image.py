"""What part of an image the model sees: the evaluation crop, at any display size, and the mask with it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..explain import mask_energy, pointing_game
from ..models import ModelConfig

__all__ = ["MaskScores", "mask_scores", "mask_view", "model_view"]


def _crop_box(size: tuple[int, int], config: ModelConfig) -> tuple[float, float, float, float]:
    """The box of the original image that :func:`tokenfusion.data.transforms.eval_transform` keeps:
    the short side is resized to ``img_size / crop_pct`` and the centre ``img_size`` square cropped."""
    width, height = size
    resized_short = round(config.img_size / config.crop_pct)
    side = config.img_size * min(width, height) / resized_short
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def model_view(image: Image.Image, config: ModelConfig, size: int | None = None) -> Image.Image:
    """The square the model sees of ``image`` (its evaluation crop), ``size`` px wide (default:
    the model's ``img_size``), taken from the full-resolution image so it stays sharp on screen.
    Maps of :mod:`tokenfusion.explain` align with it."""
    size = size or config.img_size
    return image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC, box=_crop_box(image.size, config))


def mask_view(mask: np.ndarray | Tensor, config: ModelConfig) -> Tensor:
    """An object mask ``(H, W)`` of the original image through the same crop, as a bool
    ``(img_size, img_size)`` tensor aligned with the model input and its explanation maps."""
    array = mask.cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    image = Image.fromarray(array.astype(np.uint8) * 255)
    box = _crop_box(image.size, config)
    view = image.resize((config.img_size, config.img_size), Image.Resampling.BILINEAR, box=box)
    return torch.from_numpy(np.asarray(view) >= 128)


@dataclass(frozen=True)
class MaskScores:
    """How a map sits on the object: ``pointing`` 1.0 when its maximum is on the mask,
    ``energy`` the share of its mass on the mask, ``chance`` the share of the image the mask
    covers (the energy of a uniform map)."""

    pointing: float
    energy: float
    chance: float


def mask_scores(saliency: Tensor, mask: Tensor) -> MaskScores:
    """Pointing game and mask energy of a map ``(H, W)`` against a bool mask of the same shape."""
    saliency = saliency.detach().float().cpu()
    return MaskScores(pointing_game(saliency, mask), mask_energy(saliency, mask), float(mask.float().mean()))
