"""``python -m train.evaluate``: top-1/top-5 of a checkpoint and its confusion matrix.

On SynthShapes images generated afresh (``--seed``, ``--samples``) for SynthShapes models, or on
``--data-path ROOT/val`` (ImageNet layout) for anything else. With ``--ablate-tokens``, for a fusion
model, also the top-1 with every CNN token, and then every patch token, replaced by their mean
(branch ablation): how much the model relies on each kind (two more passes over the data).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from tokenfusion.checkpoint import CheckpointError, load_checkpoint
from tokenfusion.data import HELDOUT_SEED, SynthShapes, cue_accuracy
from tokenfusion.data.imagefolder import DatasetError, open_split
from tokenfusion.data.transforms import eval_transform
from tokenfusion.explain import mean_tokens
from tokenfusion.models import TokenFusionModel

from .data import Transformed
from .distributed import init_distributed
from .engine import evaluate

__all__ = ["evaluate_checkpoint", "heldout_accuracy", "main"]



def _evaluate_on(model: TokenFusionModel, data: Dataset, batch_size: int = 256, workers: int = 0) -> dict[str, Any]:
    loader = DataLoader(Transformed(data, eval_transform(model.config)), batch_size=batch_size, num_workers=workers)
    return evaluate(model, loader, init_distributed("cpu"), model.config.num_classes)


def heldout_accuracy(model: TokenFusionModel, samples: int, seed: int = HELDOUT_SEED) -> dict[str, Any]:
    """Top-1/top-5 (%) of a SynthShapes model on ``samples`` images generated afresh from ``seed``,
    and its accuracy on each cue alone (``shape``, ``texture``)."""
    metrics = _evaluate_on(model, SynthShapes(samples, image_size=model.config.img_size, seed=seed))
    return {"seed": seed, "samples": samples, "top1": metrics["top1"], "top5": metrics["top5"],
            **cue_accuracy(metrics["confusion"])}


def evaluate_checkpoint(
    path: str | Path, *, data_path: str | None = None, samples: int = 2000, seed: int = HELDOUT_SEED,
    batch_size: int = 256, workers: int = 0, ablate_tokens: bool = False,
) -> dict[str, Any]:
    """Evaluate the checkpoint at ``path``; returns top1, top5 (%), val_loss, confusion, the data used, on
    SynthShapes the accuracy on each cue alone (``shape``, ``texture``) and, with ``ablate_tokens`` on a
    fusion model, the top-1 with each kind of token replaced by its mean (``top1_without_cnn_tokens``,
    ``top1_without_patch_tokens``)."""
    checkpoint = load_checkpoint(path)
    model, config = checkpoint.model, checkpoint.config
    if data_path:
        data = open_split(data_path, "val")
        if list(data.classes) != checkpoint.class_names:
            raise DatasetError(f"{data_path}/val holds classes {data.classes[:3]}..., the checkpoint {checkpoint.class_names[:3]}...")
        source: dict[str, Any] = {"data_path": str(data_path)}
    else:
        data = SynthShapes(samples, image_size=config.img_size, seed=seed)
        source = {"dataset": "synthshapes", "seed": seed, "samples": samples}
    metrics = _evaluate_on(model, data, batch_size, workers)
    if not data_path:
        metrics.update(cue_accuracy(metrics["confusion"]))
    if ablate_tokens and len(kinds := model.structure.token_kinds) == 2:
        for kind in kinds:
            with mean_tokens(model, kind):
                metrics[f"top1_without_{kind}_tokens"] = _evaluate_on(model, data, batch_size, workers)["top1"]
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
                        help="fusion models: also the top-1 without CNN tokens and without patch tokens")
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
    if "top1_without_cnn_tokens" in result:
        print(f"  top-1 with every CNN token replaced by their mean {result['top1_without_cnn_tokens']:.2f}%, "
              f"every patch token {result['top1_without_patch_tokens']:.2f}%")
    elif args.ablate_tokens:
        print("  no branch ablation: this model has one kind of token")
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
