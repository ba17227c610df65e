"""ImageNet-layout folders (``root/train/<class>/*``, ``root/val/<class>/*``) that never crash mid-epoch."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from .images import to_rgb

__all__ = ["DatasetError", "ImageFolderDataset", "open_split"]


class DatasetError(ValueError):
    """A data folder that cannot be used; the message says what was expected."""


class ImageFolderDataset(ImageFolder):
    """torchvision ``ImageFolder`` that skips files it cannot read.

    Empty files and files with other extensions are left out when the folder is scanned
    (``num_skipped`` counts them); an image that fails to decode later (truncated, corrupt) is
    replaced by the next readable one and counted in ``num_unreadable`` with a warning, so an
    epoch never dies on one bad file.
    """

    def __init__(self, root: str | Path, transform: Callable | None = None) -> None:
        self.num_skipped = 0

        def is_valid(path: str) -> bool:
            ok = path.lower().endswith(IMG_EXTENSIONS) and Path(path).stat().st_size > 0
            self.num_skipped += not ok
            return ok

        try:
            super().__init__(str(root), transform=transform, is_valid_file=is_valid)
        except FileNotFoundError as e:
            raise DatasetError(f"{root}: {e}. Expected one sub-folder of images per class.") from None
        self.num_unreadable = 0

    def __getitem__(self, index: int) -> tuple[Any, int]:
        for offset in range(len(self.samples)):
            path, target = self.samples[(index + offset) % len(self.samples)]
            try:
                with Image.open(path) as image:
                    image = to_rgb(image)  # as the app decodes: EXIF rotation, transparency on white, 16-bit
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                self.num_unreadable += 1
                warnings.warn(f"Skipping unreadable image {path}: {e}", stacklevel=2)
                continue
            return (self.transform(image) if self.transform else image), target
        raise DatasetError(f"No readable image in {self.root}")


def open_split(root: str | Path, split: str, transform: Callable | None = None) -> ImageFolderDataset:
    """``root/split`` as an :class:`ImageFolderDataset`, with plain errors for a missing or empty folder."""
    folder = Path(root) / split
    if not Path(root).is_dir():
        raise DatasetError(f"Data folder {root} does not exist. Expected {root}/train/<class>/ and {root}/val/<class>/.")
    if not folder.is_dir():
        raise DatasetError(f"{folder} does not exist. Expected {root}/{split}/<class>/<images>, as in ImageNet.")
    dataset = ImageFolderDataset(folder, transform)
    if dataset.num_skipped:
        warnings.warn(f"{folder}: skipped {dataset.num_skipped} files that are empty or not images", stacklevel=2)
    return dataset
