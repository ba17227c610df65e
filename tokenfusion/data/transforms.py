"""Image transforms (torchvision transforms v2): DeiT-style training, evaluation, and one-image preprocessing."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import InterpolationMode, v2

from ..models import ModelConfig
from .images import to_rgb

__all__ = ["batch_mixing", "eval_crop_box", "eval_transform", "mask_view", "model_view", "preprocess", "train_transform"]


def train_transform(
    config: ModelConfig,
    *,
    random_resized_crop: bool = True,
    randaugment: bool = True,
    random_erasing: float = 0.25,
) -> v2.Compose:
    """DeiT's training augmentation for PIL images or ``(3, H, W)`` tensors in [0, 1]: random
    resized crop, horizontal flip, RandAugment (2 ops, magnitude 9), normalisation, random erasing."""
    size = config.img_size
    ops: list[torch.nn.Module] = [v2.ToImage()]
    if random_resized_crop:
        ops.append(v2.RandomResizedCrop(size, interpolation=InterpolationMode.BICUBIC, antialias=True))
    else:
        ops.append(v2.Resize((size, size), antialias=True))
    ops.append(v2.RandomHorizontalFlip())
    if randaugment:
        ops += [v2.ToDtype(torch.uint8, scale=True), v2.RandAugment(num_ops=2, magnitude=9)]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(config.mean, config.std)]
    if random_erasing > 0:
        ops.append(v2.RandomErasing(p=random_erasing, value=0))
    return v2.Compose(ops)


def _resized_short_side(config: ModelConfig) -> int:
    """The evaluation resize: the short side becomes ``img_size / crop_pct`` pixels."""
    return round(config.img_size / config.crop_pct)


def eval_transform(config: ModelConfig) -> v2.Compose:
    """Resize the short side to ``img_size / crop_pct``, centre-crop ``img_size``, normalise."""
    size = config.img_size
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(_resized_short_side(config), interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(config.mean, config.std),
    ])


def preprocess(image: Image.Image, config: ModelConfig) -> Tensor:
    """One image of any mode (converted by :func:`~tokenfusion.data.images.to_rgb`) to the
    ``(1, 3, img_size, img_size)`` input the model expects."""
    return eval_transform(config)(to_rgb(image)).unsqueeze(0)


def eval_crop_box(size: tuple[int, int], config: ModelConfig) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)``: the box of an image of ``size`` ``(W, H)`` that
    :func:`eval_transform` keeps (the centre ``img_size`` square after the short side is resized)."""
    width, height = size
    side = config.img_size * min(width, height) / _resized_short_side(config)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def model_view(image: Image.Image, config: ModelConfig, size: int | None = None) -> Image.Image:
    """The square the model sees of ``image`` (its evaluation crop, :func:`eval_crop_box`), ``size`` px
    wide (default: the model's ``img_size``), taken from the full-resolution image so it stays sharp
    on screen. Explanation maps align with it."""
    size = size or config.img_size
    rgb = to_rgb(image)
    return rgb.resize((size, size), Image.Resampling.BICUBIC, box=eval_crop_box(rgb.size, config))


def mask_view(mask: np.ndarray | Tensor, config: ModelConfig) -> Tensor:
    """An object mask ``(H, W)`` of the original image through the same crop, as a bool
    ``(img_size, img_size)`` tensor aligned with the model input and its explanation maps."""
    array = mask.cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    image = Image.fromarray(array.astype(np.uint8) * 255)
    view = image.resize((config.img_size, config.img_size), Image.Resampling.BILINEAR,
                        box=eval_crop_box(image.size, config))
    return torch.from_numpy(np.asarray(view) >= 128)


def batch_mixing(num_classes: int, mixup_alpha: float, cutmix_alpha: float) -> v2.Transform | None:
    """MixUp and/or CutMix on a batch (one of them chosen per batch), or ``None`` when both are off."""
    choices: list[v2.Transform] = []
    if mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    if not choices:
        return None
    return choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
