"""Datasets, samplers and loaders for training: every sample's augmentation is a pure function of
(seed, epoch, index), so a resumed run sees exactly the batches an uninterrupted one would."""
from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from tokenfusion.data import SYNTHSHAPES_DATA, SynthShapes, val_seed
from tokenfusion.data.imagefolder import open_split
from tokenfusion.data.transforms import eval_transform, train_transform
from tokenfusion.models import ModelConfig

__all__ = ["EpochSampler", "InMemory", "Transformed", "SeededAugmentation", "build_datasets", "build_loaders", "sample_seed"]


def sample_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (seed, rank, step, ...)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffles ``0..n-1`` with a generator seeded by ``(seed, epoch)``, pads to a multiple of
    ``world_size`` as ``DistributedSampler`` does, keeps this rank's share and yields
    ``(index, epoch)``. ``set_epoch(epoch, skip)`` drops the first ``skip`` samples (resume)."""

    def __init__(self, n: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True, seed: int = 0):
        self.n, self.rank, self.world_size, self.shuffle, self.seed = n, rank, world_size, shuffle, seed
        self.epoch = self.skip = 0
        self.per_rank = -(-n // world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        order += order[: self.per_rank * self.world_size - self.n]
        for index in order[self.rank :: self.world_size][self.skip :]:
            yield index, self.epoch

    def __len__(self) -> int:
        return self.per_rank - self.skip


class SeededAugmentation(Dataset):
    """Applies ``transform`` to ``base[index]`` under a torch RNG seeded by ``(seed, epoch, index)``."""

    def __init__(self, base: Dataset, transform: Any, seed: int) -> None:
        self.base, self.transform, self.seed = base, transform, seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, epoch = key
        image, label = self.base[index]
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: torch.manual_seed also seeds every accelerator, 100x the cost.
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
            return self.transform(image), label


class InMemory(Dataset):
    """Renders every image of a generated dataset once, as uint8, and serves ``(3, H, W)`` floats in
    [0, 1] from memory (SynthShapes renders ~2,000 images/s; training reads each one many times)."""

    def __init__(self, base: Dataset, progress: bool = True) -> None:
        size = len(base)  # type: ignore[arg-type]
        self.images = torch.empty((size, *base[0][0].shape), dtype=torch.uint8)  # filled in place: no float copy
        self.labels: list[int] = []
        for i in tqdm(range(size), desc="rendering", disable=not progress, leave=False):
            image, label = base[i]
            self.images[i] = (image * 255).round()
            self.labels.append(label)
        self.classes = list(base.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].float() / 255, self.labels[index]


class Transformed(Dataset):
    """``base`` with ``transform`` applied to each image (evaluation: plain indices, no randomness)."""

    def __init__(self, base: Dataset, transform: Any) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return self.transform(image), label


def build_datasets(args: argparse.Namespace, config: ModelConfig) -> tuple[Dataset, Dataset, list[str]]:
    """Raw (untransformed) train and validation sets and the class names."""
    if args.data in SYNTHSHAPES_DATA:
        # Validation images come from another seed than the training images.
        progress = not args.no_progress
        common = dict(image_size=config.img_size, version=SYNTHSHAPES_DATA[args.data])
        train = InMemory(SynthShapes(args.train_samples, seed=args.data_seed, **common), progress)
        val = InMemory(SynthShapes(args.val_samples, seed=val_seed(args.data_seed), **common), progress)
        return train, val, list(train.classes)
    if not args.data_path:
        raise ValueError(f"Preset {args.preset!r} reads an ImageFolder: give --data-path ROOT (ROOT/train, ROOT/val)")
    train = open_split(args.data_path, "train")
    val = open_split(args.data_path, "val")
    if train.classes != val.classes:
        raise ValueError(f"{args.data_path}: train and val hold different classes ({len(train.classes)} vs {len(val.classes)})")
    return train, val, list(train.classes)


def build_loaders(
    args: argparse.Namespace, config: ModelConfig, train: Dataset, val: Dataset, rank: int, world_size: int, pin: bool
) -> tuple[DataLoader, DataLoader, EpochSampler]:
    augment = train_transform(
        config, random_resized_crop=args.random_resized_crop, randaugment=args.randaugment,
        random_erasing=args.random_erasing,
    )
    sampler = EpochSampler(len(train), rank=rank, world_size=world_size, seed=args.seed)  # type: ignore[arg-type]
    common: dict[str, Any] = dict(num_workers=args.workers, pin_memory=pin, persistent_workers=args.workers > 0,
                                  generator=torch.Generator())  # own generator: loaders never draw from the global RNG
    train_loader = DataLoader(SeededAugmentation(train, augment, args.seed), batch_size=args.batch_size,
                              sampler=sampler, drop_last=True, **common)
    shard = list(range(rank, len(val), world_size))  # type: ignore[arg-type]
    val_loader = DataLoader(torch.utils.data.Subset(Transformed(val, eval_transform(config)), shard),
                            batch_size=args.batch_size, **common)
    return train_loader, val_loader, sampler
