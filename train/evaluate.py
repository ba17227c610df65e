"""``python -m train.evaluate``: top-1/top-5 of a checkpoint and its confusion matrix.

On SynthShapes images generated afresh (``--seed``, ``--samples``; the version the checkpoint trained
on) for SynthShapes models, or on ``--data-path ROOT/val`` (ImageNet layout) for anything else. On
SynthShapes v2 also the cue-conflict split: what the model follows when decoys carry another class's
shape and texture. With ``--ablate-tokens``, for a fusion model, also the top-1 under each token
intervention of each kind (:mod:`tokenfusion.interventions`: zeroed, data-set mean, contents averaged,
layout shuffled): how much the model relies on each kind, and on what of it (eight more passes).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from tokenfusion.checkpoint import CheckpointError, load_checkpoint
from tokenfusion.data import (
    HELDOUT_SEED, SYNTHSHAPES_DATA, TRAIN_SEED, SynthShapes, conflict_reliance, cue_accuracy,
)
from tokenfusion.data.imagefolder import DatasetError, open_split
from tokenfusion.data.transforms import eval_transform
from tokenfusion.interventions import INTERVENTIONS, dataset_means, describe, intervene
from tokenfusion.models import TokenFusionModel

from .data import InMemory, Transformed
from .distributed import init_distributed
from .engine import evaluate

__all__ = ["evaluate_checkpoint", "heldout_accuracy", "conflict_accuracy", "intervention_accuracy", "main"]

#: Training images whose tokens give the ``dataset_mean`` intervention its means.
MEAN_IMAGES = 512



def _evaluate_on(model: TokenFusionModel, data: Dataset, batch_size: int = 256, workers: int = 0) -> dict[str, Any]:
    loader = DataLoader(Transformed(data, eval_transform(model.config)), batch_size=batch_size, num_workers=workers)
    return evaluate(model, loader, init_distributed("cpu"), model.config.num_classes)


def heldout_accuracy(model: TokenFusionModel, samples: int, seed: int = HELDOUT_SEED, version: int = 2) -> dict[str, Any]:
    """Top-1/top-5 (%) of a SynthShapes model on ``samples`` images generated afresh from ``seed``,
    and its accuracy on each cue alone (``shape``, ``texture``)."""
    data = SynthShapes(samples, image_size=model.config.img_size, seed=seed, version=version)
    metrics = _evaluate_on(model, data)
    return {"seed": seed, "samples": samples, "top1": metrics["top1"], "top5": metrics["top5"],
            **cue_accuracy(metrics["confusion"])}


def _images(data: Dataset, model: TokenFusionModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of ``data`` rendered once and normalised for ``model`` ``(N, 3, H, W)``, and the labels ``(N,)``."""
    rendered = InMemory(data, progress=False)
    transform = eval_transform(model.config)
    return torch.stack([transform(rendered[i][0]) for i in range(len(rendered))]), torch.tensor(rendered.labels)


@torch.no_grad()
def _predict(model: TokenFusionModel, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(batch).argmax(-1) for batch in images.split(batch_size)])


def conflict_accuracy(model: TokenFusionModel, samples: int, seed: int = HELDOUT_SEED) -> dict[str, Any]:
    """What a SynthShapes v2 model follows on ``samples`` cue-conflict images of ``seed``
    (:func:`~tokenfusion.data.conflict_reliance`, in %)."""
    data = SynthShapes(samples, image_size=model.config.img_size, seed=seed, conflict=True)
    images, labels = _images(data, model)
    decoys = [data.sample(i).decoy_label for i in range(samples)]
    return {"seed": seed, "samples": samples, **conflict_reliance(_predict(model, images).tolist(), labels.tolist(), decoys)}


def intervention_accuracy(model: TokenFusionModel, data: Dataset, generator_seed: int = 0) -> dict[str, dict[str, float]]:
    """Top-1 (%) on ``data`` under every token intervention of every kind of token ``model`` makes (a fusion
    model's two, the ViT's patch tokens), ``{kind: {intervention: top-1}}``; the data-set means come from
    :data:`MEAN_IMAGES` training images."""
    images, labels = _images(data, model)
    train_images, _ = _images(SynthShapes(MEAN_IMAGES, image_size=model.config.img_size, seed=TRAIN_SEED), model)
    result: dict[str, dict[str, float]] = {}
    for kind in model.structure.token_kinds:
        means = dataset_means(model, train_images, kind)
        result[kind] = {}
        for how in INTERVENTIONS:
            with intervene(model, kind, how, means=means, generator=torch.Generator().manual_seed(generator_seed)):
                result[kind][how] = float(100 * (_predict(model, images) == labels).double().mean())
    return result


def evaluate_checkpoint(
    path: str | Path, *, data_path: str | None = None, samples: int = 2000, seed: int = HELDOUT_SEED,
    batch_size: int = 256, workers: int = 0, ablate_tokens: bool = False,
) -> dict[str, Any]:
    """Evaluate the checkpoint at ``path``; returns top1, top5 (%), val_loss, confusion, the data used, on
    SynthShapes the accuracy on each cue alone (``shape``, ``texture``), on SynthShapes v2 what the model
    follows on the cue-conflict split (``conflict``) and, with ``ablate_tokens`` on a model that makes tokens, the
    top-1 under every token intervention of each kind (``interventions``: ``{kind: {intervention: top-1}}``)."""
    checkpoint = load_checkpoint(path)
    model, config = checkpoint.model, checkpoint.config
    if data_path:
        data = open_split(data_path, "val")
        if list(data.classes) != checkpoint.class_names:
            raise DatasetError(f"{data_path}/val holds classes {data.classes[:3]}..., the checkpoint {checkpoint.class_names[:3]}...")
        source: dict[str, Any] = {"data_path": str(data_path)}
    else:
        dataset = checkpoint.training.get("dataset", "synthshapes")
        version = SYNTHSHAPES_DATA.get(dataset, 2)
        data = SynthShapes(samples, image_size=config.img_size, seed=seed, version=version)
        source = {"dataset": dataset if dataset in SYNTHSHAPES_DATA else "synthshapes", "seed": seed, "samples": samples}
    metrics = _evaluate_on(model, data, batch_size, workers)
    if not data_path:
        metrics.update(cue_accuracy(metrics["confusion"]))
        if version >= 2:
            metrics["conflict"] = conflict_accuracy(model, samples, seed)
    if ablate_tokens and model.structure.token_kinds:
        metrics["interventions"] = intervention_accuracy(model, data)
    return {**source, **metrics, "class_names": checkpoint.class_names}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-path", default=None, help="ImageFolder root with val/ (default: SynthShapes)")
    parser.add_argument("--samples", type=int, default=2000, help="SynthShapes images")
    parser.add_argument("--seed", type=int, default=HELDOUT_SEED, help="SynthShapes seed")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for metrics.json and confusion.csv")
    parser.add_argument("--ablate-tokens", action="store_true",
                        help="also the top-1 under every token intervention of each kind of token the model makes")
    args = parser.parse_args(argv)
    try:
        result = evaluate_checkpoint(args.checkpoint, data_path=args.data_path, samples=args.samples, seed=args.seed,
                                     batch_size=args.batch_size, workers=args.workers,
                                     ablate_tokens=args.ablate_tokens)
    except (CheckpointError, DatasetError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{Path(args.checkpoint).name}: top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  "
          f"loss {result['val_loss']:.4f}")
    if "shape" in result:
        print(f"  on one cue alone: shape {result['shape']:.2f}%  texture {result['texture']:.2f}%")
    if "conflict" in result:
        c = result["conflict"]
        print(f"  cue conflict: object's class {c['top1']:.2f}%, its shape {c['shape']:.2f}% (decoy's {c['decoy_shape']:.2f}%), "
              f"its texture {c['texture']:.2f}% (decoy's {c['decoy_texture']:.2f}%)")
    if "interventions" in result:
        for kind, rows in result["interventions"].items():
            print("  " + ", ".join(f"{describe(kind, how)} {top1:.2f}%" for how, top1 in rows.items()))
    elif args.ablate_tokens:
        print("  no token interventions: this model makes no tokens")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        names = result.pop("class_names")
        confusion = result.pop("confusion")
        with open(out / "confusion.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["true \\ predicted", *names])
            writer.writerows([name, *row] for name, row in zip(names, confusion))
        (out / "metrics.json").write_text(json.dumps({"checkpoint": str(args.checkpoint), **result}, indent=2))
        print(f"wrote {out / 'metrics.json'} and {out / 'confusion.csv'}")


if __name__ == "__main__":
    main()
